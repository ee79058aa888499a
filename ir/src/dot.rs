//! Graphviz output.

use crate::graph::Graph;
use crate::op::Op;

pub(crate) fn to_dot(g: &Graph) -> String {
    let mut s = String::from("digraph model {\n  rankdir=TB;\n  node [shape=box, fontname=\"Helvetica\", fontsize=10];\n");
    for (i, n) in g.nodes.iter().enumerate() {
        let (shape, color) = match n.op {
            Op::Input { .. } => ("ellipse", "lightblue"),
            Op::Param { .. } => ("note", "lightyellow"),
            _ if g.outputs.contains(&i) => ("box", "palegreen"),
            _ => ("box", "white"),
        };
        let label = format!("{}\\n{}{}", escape(&n.op.name()), n.shape, if n.label.is_empty() { String::new() } else { format!("\\n{}", escape(&n.label)) });
        s.push_str(&format!("  n{i} [label=\"{label}\", shape={shape}, style=filled, fillcolor={color}];\n"));
        for &a in &n.inputs {
            s.push_str(&format!("  n{a} -> n{i};\n"));
        }
    }
    s.push_str("}\n");
    s
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
