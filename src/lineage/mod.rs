//! Lineage: the graph sources → bronze → silver → gold, derived from the config and from the
//! tables each gold SQL reads.

pub mod openlineage;

use serde::Serialize;

use crate::config::Zone;
use crate::pipeline::Plan;

/// A node of the lineage graph.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Node {
    pub zone: Zone,
    pub name: String,
}

/// The whole graph as edges from upstream to downstream.
#[derive(Debug, Clone, Serialize)]
pub struct Lineage {
    pub nodes: Vec<Node>,
    pub edges: Vec<(Node, Node)>,
}

impl Lineage {
    /// Builds the graph of a plan.
    pub fn of(plan: &Plan) -> Lineage {
        let mut nodes = Vec::new();
        let mut edges = Vec::new();
        for s in &plan.config.sources {
            nodes.push(Node {
                zone: Zone::Bronze,
                name: s.name.clone(),
            });
        }
        for t in &plan.config.tables {
            let node = Node {
                zone: t.zone,
                name: t.name.clone(),
            };
            nodes.push(node.clone());
            if let Some(s) = t.silver() {
                edges.push((
                    Node {
                        zone: Zone::Bronze,
                        name: s.from.clone(),
                    },
                    node.clone(),
                ));
            }
            if let Some(g) = plan.gold_plan(&t.name) {
                for i in &g.inputs {
                    let zone = plan.config.table(i).map(|t| t.zone).unwrap_or(Zone::Silver);
                    edges.push((
                        Node {
                            zone,
                            name: i.clone(),
                        },
                        node.clone(),
                    ));
                }
            }
        }
        Lineage { nodes, edges }
    }

    /// Direct upstream nodes of a node.
    pub fn upstream(&self, n: &Node) -> Vec<&Node> {
        self.edges
            .iter()
            .filter(|(_, d)| d == n)
            .map(|(u, _)| u)
            .collect()
    }

    /// Direct downstream nodes of a node.
    pub fn downstream(&self, n: &Node) -> Vec<&Node> {
        self.edges
            .iter()
            .filter(|(u, _)| u == n)
            .map(|(_, d)| d)
            .collect()
    }
}
