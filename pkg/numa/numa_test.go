package numa

import (
	"math/rand"
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"
)

func pods(cpus ...int64) []Demand {
	out := make([]Demand, len(cpus))
	for i, c := range cpus {
		out[i] = Demand{{CPUs: c}}
	}
	return out
}

func TestAdmit(t *testing.T) {
	tests := []struct {
		name     string
		policy   Policy
		capacity []int64
		free     []int64
		cpus     int64
		want     []int64 // CPUs taken per zone; nil: rejected
		reason   string
	}{
		{name: "lowest numbered zone wins, not the tightest", policy: PolicySingleNUMANode,
			capacity: []int64{16, 16}, free: []int64{12, 4}, cpus: 4, want: []int64{4, 0}},
		{name: "the first zone with room", policy: PolicySingleNUMANode,
			capacity: []int64{16, 16, 16, 16}, free: []int64{2, 3, 8, 16}, cpus: 4, want: []int64{0, 0, 4, 0}},
		{name: "single-numa-node refuses a pod no zone has room for", policy: PolicySingleNUMANode,
			capacity: []int64{16, 16}, free: []int64{3, 3}, cpus: 4, reason: ReasonTopologyAffinity},
		{name: "single-numa-node refuses a pod larger than a zone", policy: PolicySingleNUMANode,
			capacity: []int64{16, 16}, free: []int64{16, 16}, cpus: 20, reason: ReasonTopologyAffinity},
		{name: "restricted takes the fewest zones that could ever hold the pod", policy: PolicyRestricted,
			capacity: []int64{16, 16, 16}, free: []int64{16, 10, 16}, cpus: 20, want: []int64{16, 4, 0}},
		{name: "restricted refuses a wider set than needed", policy: PolicyRestricted,
			capacity: []int64{16, 16}, free: []int64{2, 2}, cpus: 4, reason: ReasonTopologyAffinity},
		{name: "best-effort admits across zones", policy: PolicyBestEffort,
			capacity: []int64{16, 16}, free: []int64{2, 2}, cpus: 4, want: []int64{2, 2}},
		{name: "best-effort still prefers one zone", policy: PolicyBestEffort,
			capacity: []int64{16, 16}, free: []int64{2, 6}, cpus: 4, want: []int64{0, 4}},
		{name: "none packs onto the fullest zone", policy: PolicyNone,
			capacity: []int64{16, 16}, free: []int64{16, 6}, cpus: 4, want: []int64{0, 4}},
		{name: "not enough CPUs at all", policy: PolicyBestEffort,
			capacity: []int64{16, 16}, free: []int64{1, 1}, cpus: 4, reason: ReasonUnexpected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			free := slices.Clone(tt.free)
			a := Admit(tt.policy, tt.capacity, free, Demand{{CPUs: tt.cpus}})
			if tt.want == nil {
				if a.Admitted || a.Reason != tt.reason {
					t.Fatalf("want rejection %q, got %+v", tt.reason, a)
				}
				if !slices.Equal(free, tt.free) {
					t.Fatalf("a rejected pod changed the zones: %v", free)
				}
				return
			}
			if !a.Admitted || !slices.Equal(a.Took, tt.want) {
				t.Fatalf("want %v taken, got %+v", tt.want, a)
			}
			for i := range free {
				if free[i] != tt.free[i]-tt.want[i] {
					t.Fatalf("zones left %v after taking %v from %v", free, tt.want, tt.free)
				}
			}
		})
	}
}

func TestAdmitContainerScopeRejectsTheWholePod(t *testing.T) {
	free := []int64{6, 6}
	// The second container finds no zone: nothing the first took stays.
	a := Admit(PolicySingleNUMANode, []int64{16, 16}, free, Demand{{CPUs: 4}, {CPUs: 4}, {CPUs: 4}})
	if a.Admitted || !slices.Equal(free, []int64{6, 6}) {
		t.Fatalf("want rejection leaving 6/6, got %+v and %v", a, free)
	}
	a = Admit(PolicySingleNUMANode, []int64{16, 16}, free, Demand{{CPUs: 5, Transient: true}, {CPUs: 4}, {CPUs: 2}})
	if !a.Admitted || !slices.Equal(free, []int64{0, 6}) {
		t.Fatalf("an init container's CPUs come back: want 0/6 left, got %+v and %v", a, free)
	}
}

func TestSafe(t *testing.T) {
	capacity := []int64{16, 16}
	tests := []struct {
		name    string
		free    []int64
		pending []Demand
		want    bool
	}{
		{name: "two pairs that fill a zone each are not safe: the small ones may come first", free: []int64{16, 16}, pending: pods(12, 12, 4, 4)},
		{name: "one pair and one more", free: []int64{16, 16}, pending: pods(12, 12, 4), want: true},
		{name: "one large and five small", free: []int64{16, 16}, pending: pods(12, 4, 4, 4, 4, 4), want: true},
		{name: "halves", free: []int64{16, 16}, pending: pods(8, 8, 8, 8), want: true},
		{name: "two of a size to a zone", free: []int64{16, 16}, pending: pods(6, 6, 6, 6), want: true},
		{name: "a fifth does not fit although the CPUs would", free: []int64{16, 16}, pending: pods(6, 6, 6, 6, 6)},
		{name: "in room already taken", free: []int64{4, 16}, pending: pods(12, 4), want: true},
		{name: "in room already taken, the small one first", free: []int64{12, 4}, pending: pods(12, 4)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Safe(PolicySingleNUMANode, capacity, tt.free, tt.pending); got != tt.want {
				t.Fatalf("Safe = %v, want %v", got, tt.want)
			}
			if got := everyOrder(PolicySingleNUMANode, capacity, tt.free, tt.pending); got != tt.want {
				t.Fatalf("the test's own expectation is wrong: every order gives %v", got)
			}
		})
	}
}

// everyOrder admits pending in every order, one by one.
func everyOrder(policy Policy, capacity, free []int64, pending []Demand) bool {
	idx := make([]int, len(pending))
	for i := range idx {
		idx[i] = i
	}
	ok := true
	permute(idx, 0, func(order []int) bool {
		f := slices.Clone(free)
		for _, i := range order {
			if !Admit(policy, capacity, f, pending[i]).Admitted {
				ok = false
				return false
			}
		}
		return true
	})
	return ok
}

func permute(a []int, k int, visit func([]int) bool) bool {
	if k == len(a) {
		return visit(a)
	}
	for i := k; i < len(a); i++ {
		a[k], a[i] = a[i], a[k]
		if !permute(a, k+1, visit) {
			a[k], a[i] = a[i], a[k]
			return false
		}
		a[k], a[i] = a[i], a[k]
	}
	return true
}

// TestSafeMatchesEveryOrder checks Safe against admitting the pods in
// every order, on random nodes of 2 and 4 zones.
func TestSafeMatchesEveryOrder(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	sizes := []int64{1, 2, 3, 4, 6, 8, 12, 16, 20}
	checked := map[bool]int{}
	for i := range 3000 {
		zones := []int{2, 4}[i%2]
		policy := []Policy{PolicySingleNUMANode, PolicyRestricted}[(i/2)%2]
		capacity := make([]int64, zones)
		free := make([]int64, zones)
		for z := range capacity {
			capacity[z] = 8
			if zones == 2 {
				capacity[z] = 16
			}
			free[z] = capacity[z] - int64(r.Intn(int(capacity[z])/2+1))
		}
		pending := make([]Demand, 1+r.Intn(6))
		for p := range pending {
			pending[p] = Demand{{CPUs: sizes[r.Intn(len(sizes))] % (capacity[0] + 5)}}
			if pending[p][0].CPUs == 0 {
				pending[p][0].CPUs = 1
			}
			if r.Intn(5) == 0 {
				pending[p] = append(pending[p], Unit{CPUs: 1 + int64(r.Intn(3))})
			}
		}
		want := everyOrder(policy, capacity, free, pending)
		if got := Safe(policy, capacity, free, pending); got != want {
			t.Fatalf("%s, capacity %v, free %v, pending %v: Safe = %v, every order gives %v", policy, capacity, free, pending, got, want)
		}
		checked[want]++
	}
	// Both answers must have come up, or the check proved little.
	if checked[true] < 300 || checked[false] < 300 {
		t.Fatalf("too one-sided a sample: %v", checked)
	}
}

func TestSafeWithoutAlignmentOnlyCountsCPUs(t *testing.T) {
	if !Safe(PolicyBestEffort, []int64{16, 16}, []int64{16, 16}, pods(12, 12, 4, 4)) {
		t.Fatal("best-effort never rejects for alignment")
	}
	if Safe(PolicyNone, []int64{16, 16}, []int64{16, 16}, pods(12, 12, 12)) {
		t.Fatal("36 CPUs do not fit in 32")
	}
}

func TestNeedsOf(t *testing.T) {
	res := func(cpu, mem string) v1.ResourceRequirements {
		l := v1.ResourceList{v1.ResourceCPU: resource.MustParse(cpu), v1.ResourceMemory: resource.MustParse(mem)}
		return v1.ResourceRequirements{Requests: l, Limits: l}
	}
	ctr := func(cpu string) v1.Container { return v1.Container{Name: "c" + cpu, Resources: res(cpu, "1Gi")} }
	always := ptr.To(v1.ContainerRestartPolicyAlways)
	tests := []struct {
		name string
		spec v1.PodSpec
		want *Needs
	}{
		{name: "one container", spec: v1.PodSpec{Containers: []v1.Container{ctr("4")}},
			want: &Needs{Container: Demand{{CPUs: 4}}, Pod: Demand{{CPUs: 4}}}},
		{name: "fractional CPUs share the pool", spec: v1.PodSpec{Containers: []v1.Container{ctr("4"), ctr("500m")}},
			want: &Needs{Container: Demand{{CPUs: 4}}, Pod: Demand{{CPUs: 4}}}},
		{name: "only fractional", spec: v1.PodSpec{Containers: []v1.Container{ctr("1500m")}}},
		{name: "burstable", spec: v1.PodSpec{Containers: []v1.Container{{Name: "b", Resources: v1.ResourceRequirements{
			Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("4")}}}}}},
		{name: "init container larger than the app", spec: v1.PodSpec{
			InitContainers: []v1.Container{ctr("6")}, Containers: []v1.Container{ctr("2"), ctr("2")}},
			want: &Needs{Container: Demand{{CPUs: 6, Transient: true}, {CPUs: 2}, {CPUs: 2}}, Pod: Demand{{CPUs: 6}}}},
		{name: "sidecars count with the app", spec: v1.PodSpec{
			InitContainers: []v1.Container{func() v1.Container { c := ctr("2"); c.RestartPolicy = always; return c }(), ctr("3")},
			Containers:     []v1.Container{ctr("4")}},
			want: &Needs{Container: Demand{{CPUs: 2}, {CPUs: 3, Transient: true}, {CPUs: 4}}, Pod: Demand{{CPUs: 6}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := NeedsOf(&v1.Pod{Spec: tt.spec})
			if (got == nil) != (tt.want == nil) || (got != nil && (!slices.Equal(got.Container, tt.want.Container) || !slices.Equal(got.Pod, tt.want.Pod))) {
				t.Fatalf("NeedsOf = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// Copies agrees with adding pods one at a time until one no longer fits.
func TestCopiesMatchesOneByOne(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	for range 500 {
		n := Node{Policy: []Policy{PolicySingleNUMANode, PolicyRestricted}[r.Intn(2)], Capacity: []int64{16, 16}, Free: []int64{int64(r.Intn(17)), int64(r.Intn(17))}}
		for range r.Intn(3) {
			n.Pending = append(n.Pending, Demand{{CPUs: 1 + int64(r.Intn(8))}})
		}
		d := Demand{{CPUs: 1 + int64(r.Intn(8))}}
		limit := int64(r.Intn(12))
		var want int64
		for want < limit && Safe(n.Policy, n.Capacity, n.Free, append(slices.Clone(n.Pending), slices.Repeat([]Demand{d}, int(want+1))...)) {
			want++
		}
		if got := n.Copies(nil, d, limit); got != want {
			t.Fatalf("%+v, %v up to %d: Copies = %d, one by one %d", n, d, limit, got, want)
		}
	}
}

// ZoneOf agrees with Admit wherever it answers.
func TestZoneOfMatchesAdmit(t *testing.T) {
	r := rand.New(rand.NewSource(5))
	answered := 0
	for range 2000 {
		policy := []Policy{PolicySingleNUMANode, PolicyRestricted, PolicyBestEffort, PolicyNone}[r.Intn(4)]
		capacity := []int64{8, 8, 8, 8}[:2+r.Intn(3)]
		free := make([]int64, len(capacity))
		for i := range free {
			free[i] = int64(r.Intn(9))
		}
		d := Demand{{CPUs: 1 + int64(r.Intn(10))}}
		zone := ZoneOf(policy, capacity, free, d)
		if zone < 0 {
			continue
		}
		answered++
		a := Admit(policy, capacity, slices.Clone(free), d)
		if z := a.Zones(); !a.Admitted || len(z) != 1 || z[0] != zone {
			t.Fatalf("%s %v free %v, %v: ZoneOf %d, Admit %+v", policy, capacity, free, d, zone, a)
		}
	}
	if answered < 500 {
		t.Fatalf("ZoneOf answered only %d times", answered)
	}
}
