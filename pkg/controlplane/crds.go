package controlplane

import (
	"context"
	"fmt"
	"io/fs"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/lockstep-sched/lockstep/manifests"
)

// InstallCRDs creates the CRDs shipped in manifests/crds and waits until the
// apiserver serves them.
func InstallCRDs(ctx context.Context, cfg *rest.Config) error {
	files, err := fs.Glob(manifests.CRDs, "crds/*.yaml")
	if err != nil {
		return err
	}
	var docs [][]byte
	for _, f := range files {
		b, err := manifests.CRDs.ReadFile(f)
		if err != nil {
			return err
		}
		docs = append(docs, b)
	}
	return InstallCRDDocuments(ctx, cfg, docs...)
}

// InstallCRDDocuments creates CRDs from YAML documents and waits until each
// is established.
func InstallCRDDocuments(ctx context.Context, cfg *rest.Config, docs ...[]byte) error {
	client, err := apiextensionsclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	for _, doc := range docs {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.UnmarshalStrict(doc, crd); err != nil {
			return fmt.Errorf("decoding CRD: %w", err)
		}
		if _, err := client.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating CRD %s: %w", crd.Name, err)
		}
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			got, err := client.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			for _, c := range got.Status.Conditions {
				if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("waiting for CRD %s: %w", crd.Name, err)
		}
	}
	return nil
}

// StartWithCRDs starts a control plane and installs the shipped CRDs: what
// the sandbox, the benchmark and the tests all need before anything else.
func StartWithCRDs(ctx context.Context, opts Options) (*ControlPlane, error) {
	cp, err := Start(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("starting the control plane: %w", err)
	}
	if err := InstallCRDs(ctx, cp.Config); err != nil {
		cp.Stop()
		return nil, fmt.Errorf("installing CRDs: %w", err)
	}
	return cp, nil
}
