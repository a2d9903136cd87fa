package integration

import (
	"testing"
	"time"
)

func TestGangThatFitsIsBoundCompletely(t *testing.T) {
	e := newEnv(t)
	e.addNodes("n", 4, nodeSpec{cpu: "8", mem: "32Gi"})
	e.createGang("mpi", 8, 8, podSpec{cpu: "4"})
	e.waitGangBound("mpi", 8, time.Minute)
	e.waitEvent("PodGroup", "mpi", "placed 8 pods on 4 nodes", 30*time.Second)
}
