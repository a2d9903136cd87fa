package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

// evictionRetry is how soon evictions refused (a PodDisruptionBudget, a
// busy apiserver) are tried again.
const evictionRetry = 5 * time.Second

// disruption is what the controller decided about a gang that lost its
// quorum after it had started.
type disruption struct {
	// why is the message of the Event and of AnnotationIncomplete.
	why string
	// evict are the members to evict (disruption mode All).
	evict []types.UID
}

// started reports whether a phase means the gang had its quorum placed.
func started(p v1alpha1.PodGroupPhase) bool {
	return p == podgroup.PhaseScheduled || p == v1alpha1.PodGroupRunning
}

// quorumLost reports whether a gang that had started has fallen below its
// quorum: members failed, were evicted or deleted, or their node went.
// Finishing is not losing it.
func quorumLost(old, now v1alpha1.PodGroupPhase) bool {
	return started(old) && !started(now) && now != v1alpha1.PodGroupFinished
}

// disrupt decides, for a gang found incomplete for cause, what to say
// and, in mode All, which members to evict: every member not finished,
// bound or not, so that the job's controller recreates the gang whole.
func disrupt(pg *v1alpha1.PodGroup, pods []corev1.Pod, cause string, mode podgroup.DisruptionMode) disruption {
	var d disruption
	if mode == podgroup.DisruptionAll {
		for i := range pods {
			p := &pods[i]
			if podgroup.Belongs(p, pg) && !podgroup.IsTerminal(p) && p.DeletionTimestamp == nil {
				d.evict = append(d.evict, p.UID)
			}
		}
		d.why = fmt.Sprintf("gang below minMember: %s; disruption mode All: evicting the %d remaining members so that the job restarts the gang whole", cause, len(d.evict))
	} else {
		d.why = fmt.Sprintf("gang below minMember: %s; disruption mode Single: the remaining members keep running", cause)
	}
	return d
}

// partialSince is when the first of a partially bound gang's members still
// bound was bound (its PodScheduled condition; its creation when the
// condition is missing).
func partialSince(pg *v1alpha1.PodGroup, pods []corev1.Pod) (time.Time, bool) {
	var since time.Time
	for i := range pods {
		p := &pods[i]
		if !podgroup.Belongs(p, pg) || !podgroup.IsBound(p) || podgroup.IsTerminal(p) {
			continue
		}
		at := p.CreationTimestamp.Time
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionTrue {
				at = c.LastTransitionTime.Time
			}
		}
		if since.IsZero() || at.Before(since) {
			since = at
		}
	}
	return since, !since.IsZero()
}

// markDisrupted writes what disrupt decided onto the PodGroup's annotations,
// before anything is evicted, so that a restarted controller goes on
// evicting the same members and not their replacements.
func (r *reconciler) markDisrupted(ctx context.Context, pg *v1alpha1.PodGroup, d disruption) error {
	if pg.Annotations == nil {
		pg.Annotations = map[string]string{}
	}
	pg.Annotations[podgroup.AnnotationIncomplete] = d.why
	if len(d.evict) > 0 {
		pg.Annotations[podgroup.AnnotationEvicting] = joinUIDs(d.evict)
	}
	if err := r.saveAnnotations(ctx, pg); err != nil {
		return fmt.Errorf("marking PodGroup %s/%s incomplete: %w", pg.Namespace, pg.Name, err)
	}
	return nil
}

// clearIncomplete removes AnnotationIncomplete once the gang is whole
// again; false when there was nothing to remove.
func (r *reconciler) clearIncomplete(ctx context.Context, pg *v1alpha1.PodGroup) (bool, error) {
	if _, ok := pg.Annotations[podgroup.AnnotationIncomplete]; !ok {
		return false, nil
	}
	delete(pg.Annotations, podgroup.AnnotationIncomplete)
	if err := r.saveAnnotations(ctx, pg); err != nil {
		return false, fmt.Errorf("clearing PodGroup %s/%s incomplete: %w", pg.Namespace, pg.Name, err)
	}
	return true, nil
}

// evictPending evicts the members AnnotationEvicting lists, through the
// Eviction API so that PodDisruptionBudgets are respected, and keeps in
// the annotation those it could not evict yet. It returns how many are
// left and the first refusal.
func (r *reconciler) evictPending(ctx context.Context, pg *v1alpha1.PodGroup, pods []corev1.Pod) (int, error) {
	listed := splitUIDs(pg.Annotations[podgroup.AnnotationEvicting])
	if len(listed) == 0 {
		return 0, nil
	}
	logger := log.FromContext(ctx)
	var left []types.UID
	var refused error
	for _, uid := range listed {
		i := slices.IndexFunc(pods, func(p corev1.Pod) bool { return p.UID == uid })
		if i < 0 || pods[i].DeletionTimestamp != nil || podgroup.IsTerminal(&pods[i]) {
			continue // gone, going, or done: nothing to evict
		}
		p := &pods[i]
		ev := &policyv1.Eviction{
			ObjectMeta:    metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace},
			DeleteOptions: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}},
		}
		var err error
		if r.evict != nil {
			err = r.evict(ctx, p, ev)
		} else {
			err = r.client.SubResource("eviction").Create(ctx, p, ev)
		}
		switch {
		case err == nil:
			logger.V(2).Info("Evicted a member of a disrupted gang", "pod", p.Name)
		case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
			// Gone, or replaced by a pod of the same name.
		default:
			left = append(left, uid)
			if refused == nil {
				refused = fmt.Errorf("evicting %s: %w", p.Name, err)
			}
		}
	}
	if len(left) == len(listed) {
		return len(left), refused
	}
	if len(left) == 0 {
		delete(pg.Annotations, podgroup.AnnotationEvicting)
	} else {
		pg.Annotations[podgroup.AnnotationEvicting] = joinUIDs(left)
	}
	if err := r.saveAnnotations(ctx, pg); err != nil {
		return len(left), fmt.Errorf("recording the members left to evict: %w", err)
	}
	return len(left), refused
}

// saveAnnotations writes the PodGroup's annotations, where the controller
// keeps what it decided about a disruption.
func (r *reconciler) saveAnnotations(ctx context.Context, pg *v1alpha1.PodGroup) error {
	if r.save != nil {
		return r.save(ctx, pg)
	}
	return r.client.Update(ctx, pg)
}

func joinUIDs(uids []types.UID) string {
	s := make([]string, len(uids))
	for i, u := range uids {
		s[i] = string(u)
	}
	return strings.Join(s, ",")
}

func splitUIDs(s string) []types.UID {
	var out []types.UID
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, types.UID(f))
		}
	}
	return out
}

// evictOnce posts evictions without client-go's retries: a budget that
// forbids an eviction answers 429 with a Retry-After of 10 s, which the
// client would wait out ten times over, holding up every other gang.
// Refused evictions are retried by the reconciler instead.
func evictOnce(kube kubernetes.Interface) func(context.Context, *corev1.Pod, *policyv1.Eviction) error {
	return func(ctx context.Context, pod *corev1.Pod, ev *policyv1.Eviction) error {
		// As client-go's Evict posts it, with the policy client's codec.
		return kube.PolicyV1().RESTClient().Post().AbsPath("/api/v1").
			Namespace(pod.Namespace).Resource("pods").Name(pod.Name).SubResource("eviction").
			Body(ev).MaxRetries(0).Do(ctx).Error()
	}
}
