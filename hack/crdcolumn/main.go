// Command crdcolumn adds the Waiting column to the PodGroup CRD that
// controller-gen generates from scheduler-plugins' Go types (make
// manifests): kubectl get podgroups then shows why each gang waits, from
// the lockstep.io/waiting annotation lockstep-scheduler keeps. The schema
// is left as generated; only the printed columns change.
package main

import (
	"bytes"
	"fmt"
	"os"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

// column is the column's YAML, as controller-gen indents a version's
// columns; it goes before Age, which kubectl shows last by convention.
var column = `    - description: Why the gang waits, as lockstep-scheduler last said (annotation
        ` + podgroup.AnnotationWaiting + `).
      jsonPath: ` + waitingJSONPath + `
      name: Waiting
      type: string
`

// waitingJSONPath reads the annotation: its dot escaped.
const waitingJSONPath = `.metadata.annotations.lockstep\.io/waiting`

const ageColumn = "    - description: Age is the time PodGroup was created.\n"

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: crdcolumn <podgroups CRD file>")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "crdcolumn:", err)
		os.Exit(1)
	}
}

func run(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if bytes.Contains(data, []byte(waitingJSONPath)) {
		return nil
	}
	if n := bytes.Count(data, []byte(ageColumn)); n != 1 {
		return fmt.Errorf("%s: want one Age column to put Waiting before, found %d", path, n)
	}
	out := bytes.Replace(data, []byte(ageColumn), []byte(column+ageColumn), 1)
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(out, &crd); err != nil {
		return fmt.Errorf("%s with the column: %w", path, err)
	}
	for _, v := range crd.Spec.Versions {
		found := false
		for _, c := range v.AdditionalPrinterColumns {
			found = found || (c.Name == "Waiting" && c.JSONPath == waitingJSONPath)
		}
		if !found {
			return fmt.Errorf("%s: version %s has no Waiting column", path, v.Name)
		}
	}
	return os.WriteFile(path, out, 0o644)
}
