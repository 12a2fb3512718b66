//! A small directed graph with a stable topological order.
//!
//! Nodes and edges keep insertion order. [`Graph::topological_order`] is Kahn's algorithm that
//! always picks the earliest inserted ready node, so the same construction always yields the same
//! order; processor ids are assigned from it.

use serde::{Deserialize, Serialize};

/// The index of a node in a [`Graph`], in insertion order.
pub type NodeIndex = usize;

/// A directed graph with node payloads `N` and edge payloads `E`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Graph<N, E> {
    nodes: Vec<N>,
    edges: Vec<(NodeIndex, E, NodeIndex)>,
}

/// The graph has a cycle; `nodes` are those left on it (or downstream of it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the graph has a cycle through nodes {nodes:?}")]
pub struct CycleError {
    /// Nodes that could not be ordered.
    pub nodes: Vec<NodeIndex>,
}

impl<N, E> Default for Graph<N, E> {
    fn default() -> Self {
        Graph { nodes: Vec::new(), edges: Vec::new() }
    }
}

impl<N, E> Graph<N, E> {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a node; returns its index.
    pub fn add_node(&mut self, node: N) -> NodeIndex {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// Adds an edge `from → to`.
    ///
    /// # Panics
    /// If either index is not a node of this graph.
    pub fn add_edge(&mut self, from: NodeIndex, edge: E, to: NodeIndex) {
        assert!(from < self.nodes.len() && to < self.nodes.len(), "edge between unknown nodes");
        self.edges.push((from, edge, to));
    }

    /// The nodes in insertion order.
    pub fn nodes(&self) -> &[N] {
        &self.nodes
    }

    /// Mutable access to the nodes.
    pub fn nodes_mut(&mut self) -> &mut [N] {
        &mut self.nodes
    }

    /// The edges `(from, payload, to)` in insertion order.
    pub fn edges(&self) -> &[(NodeIndex, E, NodeIndex)] {
        &self.edges
    }

    /// The edges leaving `node`.
    pub fn outgoing(&self, node: NodeIndex) -> impl Iterator<Item = &(NodeIndex, E, NodeIndex)> {
        self.edges.iter().filter(move |(f, _, _)| *f == node)
    }

    /// The edges entering `node`.
    pub fn incoming(&self, node: NodeIndex) -> impl Iterator<Item = &(NodeIndex, E, NodeIndex)> {
        self.edges.iter().filter(move |(_, _, t)| *t == node)
    }

    /// A topological order of the nodes, stable for a given construction order.
    pub fn topological_order(&self) -> Result<Vec<NodeIndex>, CycleError> {
        let n = self.nodes.len();
        let mut in_degree = vec![0usize; n];
        for (_, _, to) in &self.edges {
            in_degree[*to] += 1;
        }
        // A min-heap on the insertion index keeps the order stable.
        let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>> =
            (0..n).filter(|&i| in_degree[i] == 0).map(std::cmp::Reverse).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(std::cmp::Reverse(node)) = ready.pop() {
            order.push(node);
            for (_, _, to) in self.outgoing(node) {
                in_degree[*to] -= 1;
                if in_degree[*to] == 0 {
                    ready.push(std::cmp::Reverse(*to));
                }
            }
        }
        if order.len() == n {
            Ok(order)
        } else {
            Err(CycleError { nodes: (0..n).filter(|i| in_degree[*i] > 0).collect() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(n: usize, edges: &[(usize, usize)]) -> Graph<usize, ()> {
        let mut g = Graph::new();
        for i in 0..n {
            g.add_node(i);
        }
        for &(a, b) in edges {
            g.add_edge(a, (), b);
        }
        g
    }

    #[test]
    fn topological_order_table() {
        let cases: &[(usize, &[(usize, usize)], Option<&[usize]>)] = &[
            (1, &[], Some(&[0])),
            (2, &[(0, 1)], Some(&[0, 1])),
            (2, &[(1, 0)], Some(&[1, 0])),
            // Ties resolve to insertion order.
            (4, &[(3, 1), (0, 2)], Some(&[0, 2, 3, 1])),
            (3, &[(0, 1), (0, 2), (1, 2)], Some(&[0, 1, 2])),
            (2, &[(0, 1), (1, 0)], None),
            (3, &[(0, 1), (1, 2), (2, 1)], None),
            (1, &[(0, 0)], None),
        ];
        for (n, edges, expected) in cases {
            let got = graph(*n, edges).topological_order();
            match expected {
                Some(order) => assert_eq!(got.as_deref(), Ok(*order), "edges {edges:?}"),
                None => assert!(got.is_err(), "edges {edges:?} should be a cycle"),
            }
        }
    }

    #[test]
    fn cycle_error_names_the_nodes_on_it() {
        let err = graph(4, &[(0, 1), (1, 2), (2, 1), (2, 3)]).topological_order().unwrap_err();
        assert_eq!(err.nodes, vec![1, 2, 3]);
    }
}
