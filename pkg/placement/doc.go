// Package placement plans where a whole gang goes before any member is bound.
//
// It is pure code over a snapshot of nodes: no informers, no clients, no
// clocks. The gang plugin feeds it the scheduling cycle's node infos and the
// capacity other gangs hold, and follows the plan it returns. Keeping it free
// of the framework makes it cheap to test and to benchmark on thousands of
// nodes.
package placement
