package sandbox

import (
	"context"
	"fmt"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/lockstep-sched/lockstep/pkg/podgroup"
	"github.com/lockstep-sched/lockstep/pkg/sandbox/workload"
)

// submitter creates the workload objects, each at its time.
type submitter struct {
	c       *Clients
	objs    []workload.Object
	start   time.Time
	onError func(error)

	mu       sync.Mutex
	finished bool
	created  created
	errs     []string
}

// created counts what the API server accepted.
type created struct {
	pods   int
	groups map[string]bool
	// members counts created pods per gang key.
	members map[string]int
}

func newSubmitter(c *Clients, objs []workload.Object, start time.Time, onError func(error)) *submitter {
	return &submitter{c: c, objs: objs, start: start, onError: onError,
		created: created{groups: map[string]bool{}, members: map[string]int{}}}
}

// run creates the objects in order, waiting for each one's submit time.
// A failed create is reported and skipped.
func (s *submitter) run(ctx context.Context) {
	defer func() {
		s.mu.Lock()
		s.finished = true
		s.mu.Unlock()
	}()
	for i := range s.objs {
		o := &s.objs[i]
		if wait := time.Until(s.start.Add(o.SubmitAfter)); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		if err := s.create(ctx, o); err != nil {
			if ctx.Err() != nil {
				return
			}
			err = &workload.Error{File: o.File, Object: o.Ref(), Err: fmt.Errorf("creating: %w", err)}
			s.mu.Lock()
			s.errs = append(s.errs, err.Error())
			s.mu.Unlock()
			s.onError(err)
		}
	}
}

func (s *submitter) create(ctx context.Context, o *workload.Object) error {
	if o.Upstream != nil {
		pg := o.Upstream.DeepCopy()
		if _, err := s.c.Kube.SchedulingV1beta1().PodGroups(pg.Namespace).Create(ctx, pg, metav1.CreateOptions{}); err != nil {
			return err
		}
		s.mu.Lock()
		s.created.groups[podgroup.Key(pg.Namespace, pg.Name)] = true
		s.mu.Unlock()
		return nil
	}
	if o.PodGroup != nil {
		pg := o.PodGroup.DeepCopy()
		if _, err := s.c.PodGroups.SchedulingV1alpha1().PodGroups(pg.Namespace).Create(ctx, pg, metav1.CreateOptions{}); err != nil {
			return err
		}
		s.mu.Lock()
		s.created.groups[podgroup.Key(pg.Namespace, pg.Name)] = true
		s.mu.Unlock()
		return nil
	}
	pod := o.Pod.DeepCopy()
	if _, err := s.c.Kube.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return err
	}
	s.mu.Lock()
	s.created.pods++
	if key := podgroup.KeyOf(pod); key != "" {
		s.created.members[key]++
	}
	s.mu.Unlock()
	return nil
}

// done returns what was created, and whether every object has been tried.
func (s *submitter) done() (created, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.created, s.finished
}

// errors returns the create failures so far.
func (s *submitter) errors() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.errs...)
}
