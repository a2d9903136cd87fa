// Package workload reads the sandbox's workload files: multi-document YAML
// holding Pods and PodGroups. It checks each object on its own and the set as
// a whole, so that a bad object costs one line of error and the rest of the
// run goes on.
package workload

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	schedulingv1beta1 "k8s.io/api/scheduling/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
	"sigs.k8s.io/yaml"

	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

// Annotations the sandbox reads from workload objects.
const (
	// SubmitAfterAnnotation delays an object's creation by this many seconds
	// from the start of the run, to show arrival over time. Pods without it
	// arrive with their PodGroup.
	SubmitAfterAnnotation = "lockstep.io/submit-after-seconds"
	// RunSecondsAnnotation is how long a pod runs before it succeeds.
	RunSecondsAnnotation = "lockstep.io/run-seconds"
	// RequiredTopologyAnnotation on a PodGroup names the node label whose
	// domain must hold the whole gang.
	RequiredTopologyAnnotation = "lockstep.io/required-topology"
)

// SchedulerName is the profile sandbox pods go to unless they name another.
const SchedulerName = "lockstep"

// schedulers are the names a pod may ask for. The sandbox runs no default
// scheduler, and Lockstep's profiles schedule ordinary pods as it would, so
// default-scheduler is handed to the lockstep profile rather than leaving
// the pod to wait for nobody.
var schedulers = map[string]string{
	"":                            SchedulerName,
	"default-scheduler":           SchedulerName,
	SchedulerName:                 SchedulerName,
	"scheduler-plugins-scheduler": "scheduler-plugins-scheduler",
}

// Object is a Pod or a PodGroup to create, and where it came from.
type Object struct {
	// File is the workload file that holds the object.
	File string
	// Exactly one of Pod and PodGroup is set. PodGroup is a
	// scheduler-plugins PodGroup, or the translation of Upstream, a
	// scheduling.k8s.io PodGroup, which is what is created then.
	Pod      *v1.Pod
	PodGroup *v1alpha1.PodGroup
	Upstream *schedulingv1beta1.PodGroup
	// SubmitAfter is how long after the start of the run to create it.
	SubmitAfter time.Duration
	// delayed is true when the object carries its own submit delay.
	delayed bool
}

// Kind is "Pod" or "PodGroup".
func (o *Object) Kind() string {
	if o.Pod != nil {
		return "Pod"
	}
	return "PodGroup"
}

// Meta is the object's metadata.
func (o *Object) Meta() *metav1.ObjectMeta {
	switch {
	case o.Pod != nil:
		return &o.Pod.ObjectMeta
	case o.Upstream != nil:
		return &o.Upstream.ObjectMeta
	}
	return &o.PodGroup.ObjectMeta
}

// Ref names the object in messages: Kind/name, the form kubectl uses.
func (o *Object) Ref() string {
	return o.Kind() + "/" + o.Meta().Name
}

// key identifies an object across files.
func (o *Object) key() string {
	m := o.Meta()
	kind := o.Kind()
	if o.Upstream != nil {
		kind += "." + podgroup.UpstreamGroupVersion.Group
	}
	return kind + "/" + m.Namespace + "/" + m.Name
}

// Error is a problem with one document or object of a workload file. Its
// message is one line naming the file and the object.
type Error struct {
	File string
	// Object is Kind/name, or "document N" when the document has no usable
	// kind and name.
	Object string
	Err    error
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s: %v", e.File, e.Object, oneLine(e.Err))
}

func (e *Error) Unwrap() error { return e.Err }

// oneLine keeps decoder messages, which sometimes span lines, on one.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// Parse decodes one workload file. It returns the valid objects and an
// *Error for each document it had to leave out.
func Parse(file string, data []byte) ([]Object, []error) {
	var objs []Object
	var errs []error
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for n := 1; ; n++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// The reader cannot find the next document; nothing after this
			// point can be trusted.
			errs = append(errs, &Error{File: file, Object: fmt.Sprintf("document %d", n), Err: err})
			break
		}
		if isBlank(doc) {
			n--
			continue
		}
		obj, err := parseDocument(file, n, doc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		objs = append(objs, obj)
	}
	return objs, errs
}

// isBlank reports whether a document holds only comments and whitespace.
func isBlank(doc []byte) bool {
	for _, line := range strings.Split(string(doc), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && line != "---" && !strings.HasPrefix(line, "#") {
			return false
		}
	}
	return true
}

// header is what every document must have before it can be decoded.
type header struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
}

func parseDocument(file string, n int, doc []byte) (Object, error) {
	docErr := func(err error) error {
		return &Error{File: file, Object: fmt.Sprintf("document %d", n), Err: err}
	}
	var h header
	if err := yaml.Unmarshal(doc, &h); err != nil {
		return Object{}, docErr(fmt.Errorf("not valid YAML: %w", err))
	}
	if h.Kind == "" {
		return Object{}, docErr(errors.New("no kind"))
	}
	ref := h.Kind + "/" + h.Metadata.Name
	objErr := func(err error) error { return &Error{File: file, Object: ref, Err: err} }
	if h.Metadata.Name == "" {
		return Object{}, docErr(fmt.Errorf("%s has no metadata.name (generateName is not supported: the report follows objects by name)", h.Kind))
	}

	obj := Object{File: file}
	switch h.Kind {
	case "Pod":
		if h.APIVersion != "v1" {
			return Object{}, objErr(fmt.Errorf("apiVersion %q is not supported for Pod (want v1)", h.APIVersion))
		}
		obj.Pod = &v1.Pod{}
		if err := yaml.UnmarshalStrict(doc, obj.Pod); err != nil {
			return Object{}, objErr(err)
		}
	case "PodGroup":
		switch h.APIVersion {
		case podgroup.GroupVersion.String():
			obj.PodGroup = &v1alpha1.PodGroup{}
			if err := yaml.UnmarshalStrict(doc, obj.PodGroup); err != nil {
				return Object{}, objErr(err)
			}
		case podgroup.UpstreamGroupVersion.String():
			obj.Upstream = &schedulingv1beta1.PodGroup{}
			if err := yaml.UnmarshalStrict(doc, obj.Upstream); err != nil {
				return Object{}, objErr(err)
			}
		default:
			return Object{}, objErr(fmt.Errorf("apiVersion %q is not supported for PodGroup (want %s or %s)",
				h.APIVersion, podgroup.GroupVersion, podgroup.UpstreamGroupVersion))
		}
	default:
		return Object{}, objErr(fmt.Errorf("kind %s is not supported (only Pod, PodGroup)", h.Kind))
	}
	if err := normalize(&obj); err != nil {
		return Object{}, objErr(err)
	}
	return obj, nil
}

// normalize fills defaults and checks what the API server would accept but
// the sandbox cannot run.
func normalize(o *Object) error {
	m := o.Meta()
	if m.Namespace == "" {
		m.Namespace = metav1.NamespaceDefault
	}
	// Server-set fields would make the create fail or confuse the report.
	m.ResourceVersion, m.UID = "", ""
	if s, ok := m.Annotations[SubmitAfterAnnotation]; ok {
		d, err := seconds(s)
		if err != nil {
			return fmt.Errorf("annotation %s: %w", SubmitAfterAnnotation, err)
		}
		o.SubmitAfter, o.delayed = d, true
	}
	if o.Upstream != nil {
		o.Upstream.Status = schedulingv1beta1.PodGroupStatus{}
		o.PodGroup = podgroup.FromUpstream(o.Upstream)
	}
	if o.Pod == nil {
		return nil
	}
	pod := o.Pod
	if s, ok := m.Annotations[RunSecondsAnnotation]; ok {
		if _, err := seconds(s); err != nil {
			return fmt.Errorf("annotation %s: %w", RunSecondsAnnotation, err)
		}
	}
	name, ok := schedulers[pod.Spec.SchedulerName]
	if !ok {
		return fmt.Errorf("schedulerName %q is not supported (use lockstep, scheduler-plugins-scheduler or default-scheduler)", pod.Spec.SchedulerName)
	}
	pod.Spec.SchedulerName = name
	if pod.Spec.NodeName != "" {
		return errors.New("spec.nodeName is set: the sandbox shows scheduling, so pods must leave it to the scheduler")
	}
	pod.Status = v1.PodStatus{}
	return nil
}

// seconds parses a non-negative number of seconds.
func seconds(s string) (time.Duration, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || f < 0 || f > 24*3600 {
		return 0, fmt.Errorf("%q is not a number of seconds between 0 and 86400", s)
	}
	return time.Duration(f * float64(time.Second)), nil
}

// RunTime returns how long a pod runs: its run-seconds annotation, else def.
func RunTime(pod *v1.Pod, def time.Duration) time.Duration {
	if s, ok := pod.Annotations[RunSecondsAnnotation]; ok {
		if d, err := seconds(s); err == nil {
			return d
		}
	}
	return def
}

// Check looks at the objects of all files together: duplicates, pods whose
// PodGroup is missing, and PodGroups that could never gather minMember pods.
// It returns the objects to submit, in submission order (by delay, then as
// given), and an *Error for each object left out.
func Check(objs []Object) ([]Object, []error) {
	var errs []error
	seen := map[string]string{}
	var unique []Object
	for _, o := range objs {
		if prev, dup := seen[o.key()]; dup {
			errs = append(errs, &Error{File: o.File, Object: o.Ref(),
				Err: fmt.Errorf("namespace %s already has this %s (from %s); keeping the first", o.Meta().Namespace, o.Kind(), prev)})
			continue
		}
		seen[o.key()] = o.File
		unique = append(unique, o)
	}

	groups := map[string]*Object{}
	members := map[string]int{}
	for i := range unique {
		o := &unique[i]
		if o.PodGroup != nil {
			groups[podgroup.KeyOfGroup(o.PodGroup)] = o
		} else if key := podgroup.KeyOf(o.Pod); key != "" {
			members[key]++
		}
	}
	dropped := map[string]bool{}
	for key, g := range groups {
		if n, min := members[key], podgroup.MinMember(g.PodGroup); n < min {
			errs = append(errs, &Error{File: g.File, Object: g.Ref(),
				Err: fmt.Errorf("minMember is %d but only %d pods name it, so it could never start; leaving it and its pods out", min, n)})
			dropped[key] = true
		}
	}

	var out []Object
	for _, o := range unique {
		if o.PodGroup != nil {
			if !dropped[podgroup.KeyOfGroup(o.PodGroup)] {
				out = append(out, o)
			}
			continue
		}
		key := podgroup.KeyOf(o.Pod)
		switch {
		case key == "":
			out = append(out, o)
		case dropped[key]:
		case groups[key] == nil:
			errs = append(errs, &Error{File: o.File, Object: o.Ref(),
				Err: fmt.Errorf("PodGroup %s is in no workload file, so the pod would wait forever; leaving it out", groupRef(o.Pod))})
		default:
			// Members arrive with their gang unless they say otherwise.
			if g := groups[key]; !o.delayed && g.delayed {
				o.SubmitAfter = g.SubmitAfter
			}
			out = append(out, o)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].SubmitAfter < out[j].SubmitAfter })
	sortErrors(errs)
	return out, errs
}

// sortErrors orders messages by file so that the output reads like a lint.
func sortErrors(errs []error) {
	sort.SliceStable(errs, func(i, j int) bool {
		var a, b *Error
		if errors.As(errs[i], &a) && errors.As(errs[j], &b) {
			return a.File < b.File
		}
		return false
	})
}

// LoadFiles reads and parses workload files from disk, then checks them
// together. A file that cannot be read is one error; the others still load.
func LoadFiles(paths []string) ([]Object, []error) {
	return load(paths, os.ReadFile)
}

// LoadFS reads every *.yaml file at the top of fsys, in name order, naming
// each prefix/<file> in messages.
func LoadFS(fsys fs.FS, prefix string) ([]Object, []error) {
	names, err := fs.Glob(fsys, "*.yaml")
	if err != nil {
		return nil, []error{err}
	}
	slices.Sort(names)
	var shown []string
	for _, n := range names {
		shown = append(shown, path.Join(prefix, n))
	}
	return load(shown, func(p string) ([]byte, error) {
		return fs.ReadFile(fsys, strings.TrimPrefix(p, prefix+"/"))
	})
}

func load(paths []string, read func(string) ([]byte, error)) ([]Object, []error) {
	var all []Object
	var errs []error
	for _, p := range paths {
		data, err := read(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
			continue
		}
		objs, perrs := Parse(p, data)
		all = append(all, objs...)
		errs = append(errs, perrs...)
	}
	out, cerrs := Check(all)
	return out, append(errs, cerrs...)
}

// groupRef names a pod's PodGroup in messages: namespace/name, and the API
// for an upstream one.
func groupRef(pod *v1.Pod) string {
	if name := podgroup.UpstreamNameOf(pod); name != "" {
		return pod.Namespace + "/" + name + " (" + podgroup.UpstreamGroupVersion.String() + ")"
	}
	return pod.Namespace + "/" + podgroup.NameOf(pod)
}

// Namespaces returns the namespaces the objects live in, sorted.
func Namespaces(objs []Object) []string {
	var out []string
	for i := range objs {
		if ns := objs[i].Meta().Namespace; !slices.Contains(out, ns) {
			out = append(out, ns)
		}
	}
	slices.Sort(out)
	return out
}
