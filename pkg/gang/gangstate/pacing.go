package gangstate

// Bind pacing. Following a plan costs a member one Filter call, so Lockstep
// releases gangs far faster than an apiserver binds pods: without a bound,
// hundreds of bindings are in flight at once, the apiserver completes them
// in no particular order, and the members of one gang bind seconds apart.
// A gang whose quorum is assumed is therefore released only while the
// members released before it and not bound yet number fewer than the bind
// budget; otherwise it waits in a FIFO, its members held at Permit, and
// goes as bindings complete. A gang larger than the budget goes once fewer
// than the budget are binding: it overlaps the tail of the gang before it,
// and big gangs are not bound one after the other.

// bindingLocked counts released members not seen bound yet.
func (c *Cache) bindingLocked() int {
	n := 0
	for _, g := range c.gangs {
		if g.phase != Binding || g.plan == nil {
			continue
		}
		for _, s := range g.plan.slots {
			if s.state == slotAssumed {
				n++
			}
		}
	}
	return n
}

// assumedIn counts a gang's assumed members, which its release lets go.
func assumedIn(g *gang) int {
	n := 0
	if g.plan != nil {
		for _, s := range g.plan.slots {
			if s.state == slotAssumed {
				n++
			}
		}
	}
	return n
}

// mayReleaseLocked reports whether a gang whose quorum is assumed may be
// released now: it is first in line and the bind budget has room for it.
func (c *Cache) mayReleaseLocked(g *gang) bool {
	if c.cfg.BindBudget <= 0 {
		return true
	}
	for _, key := range c.ready {
		if key == g.key {
			break
		}
		if r, ok := c.gangs[key]; ok && r.ready {
			return false // an earlier gang goes first
		}
	}
	binding, n := c.bindingLocked(), assumedIn(g)
	if n > c.cfg.BindBudget {
		return binding < c.cfg.BindBudget
	}
	return binding+n <= c.cfg.BindBudget
}

// holdLocked puts a gang whose quorum is assumed in line for release.
func (c *Cache) holdLocked(g *gang) {
	if !g.ready {
		g.ready = true
		c.ready = append(c.ready, g.key)
	}
}

// releaseReadyLocked releases the gangs in line while the budget allows.
func (c *Cache) releaseReadyLocked(eff *Effects) {
	for len(c.ready) > 0 {
		g, ok := c.gangs[c.ready[0]]
		if !ok || !g.ready || g.phase != Planned {
			if ok {
				g.ready = false
			}
			c.ready = c.ready[1:]
			continue
		}
		if !c.mayReleaseLocked(g) {
			return
		}
		c.ready = c.ready[1:]
		c.releaseGangLocked(g, "", eff)
	}
}
