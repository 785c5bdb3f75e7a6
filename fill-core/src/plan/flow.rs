//! Minimum-cost flow: primal-dual with blocking flows.
//!
//! Dijkstra on reduced costs finds the length of the shortest augmenting path; then every
//! augmenting path of that length is saturated at once (Dinic's blocking flow on the
//! arcs of zero reduced cost), and the potentials move on. The planner's networks have few
//! nodes (classes + sources + slots) and few distinct path costs, so a solve is a handful of
//! phases. Capacities are integers (bytes), costs are `i128` so that a money cost and a
//! much smaller time preference can share one lexicographic number without overflow.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A capacity no arc reaches.
pub const INF: i64 = i64::MAX / 4;

/// A directed graph with residual arcs. Arcs are added in any order; solving lays them out
/// by tail node (CSR), each with the position of its residual twin, so that a node's arcs
/// are contiguous in memory.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    n: usize,
    /// Arcs as added: (from, to, cap, cost).
    added: Vec<(u32, u32, i64, i128)>,
    /// CSR: arcs of node `u` are `start[u]..start[u + 1]`.
    start: Vec<u32>,
    to: Vec<u32>,
    rev: Vec<u32>,
    cap: Vec<i64>,
    cost: Vec<i128>,
    /// Position of added arc `i` (forward) in the CSR arrays.
    pos: Vec<u32>,
}

impl Graph {
    /// A graph of `n` nodes and no arcs.
    pub fn new(n: usize) -> Self {
        Self {
            n,
            ..Self::default()
        }
    }

    /// Adds an arc `u → v`; returns its index.
    pub fn add(&mut self, u: usize, v: usize, cap: i64, cost: i128) -> usize {
        self.added.push((u as u32, v as u32, cap, cost));
        self.added.len() - 1
    }

    /// Flow on arc `e` (after [`Graph::min_cost_max_flow`]).
    pub fn flow(&self, e: usize) -> i64 {
        let p = self.pos[e] as usize;
        self.cap[self.rev[p] as usize]
    }

    fn layout(&mut self) {
        let n = self.n;
        let mut degree = vec![0u32; n + 1];
        for &(u, v, _, _) in &self.added {
            degree[u as usize] += 1;
            degree[v as usize] += 1;
        }
        let mut start = vec![0u32; n + 1];
        for u in 0..n {
            start[u + 1] = start[u] + degree[u];
        }
        let m = start[n] as usize;
        let mut fill = start.clone();
        self.to = vec![0; m];
        self.rev = vec![0; m];
        self.cap = vec![0; m];
        self.cost = vec![0; m];
        self.pos = Vec::with_capacity(self.added.len());
        for &(u, v, c, k) in &self.added {
            let (a, b) = (fill[u as usize] as usize, fill[v as usize] as usize);
            fill[u as usize] += 1;
            fill[v as usize] += 1;
            (self.to[a], self.rev[a], self.cap[a], self.cost[a]) = (v, b as u32, c, k);
            (self.to[b], self.rev[b], self.cap[b], self.cost[b]) = (u, a as u32, 0, -k);
            self.pos.push(a as u32);
        }
        self.start = start;
    }

    fn arcs(&self, u: usize) -> std::ops::Range<usize> {
        self.start[u] as usize..self.start[u + 1] as usize
    }

    /// Sends as much flow as possible from `s` to `t` at minimum cost. Arc costs must be
    /// non-negative. Returns the flow sent.
    pub fn min_cost_max_flow(&mut self, s: usize, t: usize) -> i64 {
        self.layout();
        let n = self.n;
        let mut pot = vec![0i128; n];
        let mut dist = vec![i128::MAX; n];
        let mut level = vec![u32::MAX; n];
        let mut iter = vec![0u32; n];
        let mut queue = Vec::with_capacity(n);
        let mut total = 0i64;
        loop {
            // Shortest distances by reduced cost.
            dist.fill(i128::MAX);
            dist[s] = 0;
            let mut heap = BinaryHeap::new();
            heap.push(Reverse((0i128, s as u32)));
            while let Some(Reverse((d, u))) = heap.pop() {
                let u = u as usize;
                if d > dist[u] {
                    continue;
                }
                let pu = pot[u];
                for e in self.arcs(u) {
                    if self.cap[e] <= 0 {
                        continue;
                    }
                    let v = self.to[e] as usize;
                    let nd = d + self.cost[e] + pu - pot[v];
                    if nd < dist[v] {
                        dist[v] = nd;
                        heap.push(Reverse((nd, v as u32)));
                    }
                }
            }
            if dist[t] == i128::MAX {
                return total;
            }
            let dt = dist[t];
            for v in 0..n {
                pot[v] += dist[v].min(dt);
            }
            // Blocking flows on the admissible arcs (zero reduced cost) until none is left.
            loop {
                level.fill(u32::MAX);
                level[s] = 0;
                queue.clear();
                queue.push(s as u32);
                let mut head = 0;
                while head < queue.len() {
                    let u = queue[head] as usize;
                    head += 1;
                    for e in self.arcs(u) {
                        let v = self.to[e] as usize;
                        if self.cap[e] > 0
                            && level[v] == u32::MAX
                            && self.cost[e] + pot[u] - pot[v] == 0
                        {
                            level[v] = level[u] + 1;
                            queue.push(v as u32);
                        }
                    }
                }
                if level[t] == u32::MAX {
                    break;
                }
                iter.copy_from_slice(&self.start[..n]);
                loop {
                    let pushed = self.augment(s, t, &level, &mut iter, &pot);
                    if pushed == 0 {
                        break;
                    }
                    total += pushed;
                }
            }
        }
    }

    /// One augmenting path along the level graph (iterative DFS with current-arc pointers).
    fn augment(
        &mut self,
        s: usize,
        t: usize,
        level: &[u32],
        iter: &mut [u32],
        pot: &[i128],
    ) -> i64 {
        let mut path: Vec<usize> = Vec::new();
        let mut u = s;
        loop {
            if u == t {
                let push = path.iter().map(|&e| self.cap[e]).min().unwrap_or(0);
                for &e in &path {
                    self.cap[e] -= push;
                    self.cap[self.rev[e] as usize] += push;
                }
                return push;
            }
            let end = self.start[u + 1];
            let mut advanced = false;
            while iter[u] < end {
                let e = iter[u] as usize;
                let v = self.to[e] as usize;
                if self.cap[e] > 0
                    && level[v] == level[u].wrapping_add(1)
                    && self.cost[e] + pot[u] - pot[v] == 0
                {
                    path.push(e);
                    u = v;
                    advanced = true;
                    break;
                }
                iter[u] += 1;
            }
            if advanced {
                continue;
            }
            // Dead end: retreat, and skip the arc that led here.
            let Some(e) = path.pop() else {
                return 0;
            };
            u = self.to[self.rev[e] as usize] as usize;
            iter[u] += 1;
        }
    }

    /// Nodes reachable from `s` by arcs with residual capacity: after a maximum flow, the
    /// source side of a minimum cut.
    pub fn reachable(&self, s: usize) -> Vec<bool> {
        let mut seen = vec![false; self.n];
        seen[s] = true;
        let mut stack = vec![s];
        while let Some(u) = stack.pop() {
            for e in self.arcs(u) {
                let v = self.to[e] as usize;
                if self.cap[e] > 0 && !seen[v] {
                    seen[v] = true;
                    stack.push(v);
                }
            }
        }
        seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cheapest_paths_first() {
        // s → a (cap 5) → t cost 1; s → b (cap 5) → t cost 3; demand through a shared arc.
        let mut g = Graph::new(5);
        let (s, a, b, m, t) = (0, 1, 2, 3, 4);
        let sa = g.add(s, a, 5, 0);
        let sb = g.add(s, b, 5, 0);
        g.add(a, m, 5, 1);
        g.add(b, m, 5, 3);
        g.add(m, t, 7, 0);
        assert_eq!(g.min_cost_max_flow(s, t), 7);
        assert_eq!(g.flow(sa), 5);
        assert_eq!(g.flow(sb), 2);
    }

    #[test]
    fn reroutes_through_residual_arcs() {
        // The classic case where the greedy first path must be undone: x can use p or q,
        // y only p. Min cost sends x through q.
        let mut g = Graph::new(6);
        let (s, x, y, p, q, t) = (0, 1, 2, 3, 4, 5);
        g.add(s, x, 1, 0);
        g.add(s, y, 1, 0);
        let xp = g.add(x, p, 1, 1);
        let xq = g.add(x, q, 1, 2);
        g.add(y, p, 1, 1);
        g.add(p, t, 1, 0);
        g.add(q, t, 1, 0);
        assert_eq!(g.min_cost_max_flow(s, t), 2);
        assert_eq!(g.flow(xp), 0);
        assert_eq!(g.flow(xq), 1);
        let cut = g.reachable(s);
        assert!(cut[s] && !cut[t]);
    }
}
