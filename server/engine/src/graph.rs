//! The validated job graph: operators in topological order, the edges between them and how each edge
//! partitions records.

use crate::function::UdfKind;
use crate::spec::{
    AggregateSpec, JobSpec, KeySpec, ModuleRef, OnError, OperatorKind, OperatorSpec, PreAggregate, SinkSpec,
    SourceSpec, SpecErrors, TimestampSpec, UdfSpec, WindowFunctionSpec,
};
use std::collections::{BTreeMap, HashMap};

/// Looks up uploaded modules while a graph is built.
pub trait ModuleCatalog {
    /// Resolves `module` and checks that it exports the function `kind`; returns its content hash.
    fn resolve(&self, module: &ModuleRef, kind: UdfKind) -> Result<String, String>;
}

/// A catalog without modules, for jobs made of built-ins only.
#[derive(Debug, Default)]
pub struct NoModules;

impl ModuleCatalog for NoModules {
    fn resolve(&self, module: &ModuleRef, _: UdfKind) -> Result<String, String> {
        Err(format!("unknown module `{module}`"))
    }
}

/// How an edge spreads records over the receiving subtasks.
#[derive(Debug, Clone, PartialEq)]
pub enum Partitioning {
    /// Subtask i sends to subtask i (equal parallelism).
    Forward,
    /// Whole batches go round-robin to the receivers.
    Rebalance,
    /// Records go to the subtask owning their key group; the key is selected before sending.
    Hash(KeySpec),
}

/// An edge of the graph.
#[derive(Debug, Clone)]
pub struct Edge {
    /// Index of the upstream node.
    pub from: usize,
    /// The side output it reads, or none for the main output.
    pub tag: Option<String>,
    /// Index of the downstream node.
    pub to: usize,
    /// Which input of the downstream node (0, or 1 for a connect's second input).
    pub input: usize,
    /// How records are spread.
    pub partitioning: Partitioning,
}

/// An operator with its resolved parallelism.
#[derive(Debug, Clone)]
pub struct Node {
    /// The operator's uid.
    pub uid: String,
    /// Number of parallel subtasks.
    pub parallelism: u32,
    /// What it does (module references resolved to content hashes).
    pub kind: OperatorKind,
    /// Whether its input is keyed (keyed state and timers available).
    pub keyed: bool,
    /// What becomes of a record it cannot read.
    pub on_error: OnError,
    /// Indices of incoming edges, in input order.
    pub inputs: Vec<usize>,
    /// Indices of outgoing edges.
    pub outputs: Vec<usize>,
}

/// A job graph that passed every check.
#[derive(Debug, Clone)]
pub struct JobGraph {
    /// The job's name.
    pub name: String,
    /// Number of key groups.
    pub max_parallelism: u32,
    /// Operators in topological order (every edge goes from a lower to a higher index).
    pub nodes: Vec<Node>,
    /// All edges.
    pub edges: Vec<Edge>,
    /// Every module the job uses: reference as written -> content hash.
    pub modules: BTreeMap<String, String>,
    /// The job spec's state time-to-live, applied to every state user functions open.
    pub state_ttl: Option<crate::spec::TtlSpec>,
    /// Where keyed state is kept; none: the server's default.
    pub state_backend: Option<crate::spec::BackendKind>,
    /// Checkpoint settings; none: no checkpoints.
    pub checkpoints: Option<crate::spec::CheckpointSpec>,
    /// What happens when the job fails.
    pub restart: crate::spec::RestartSpec,
}

impl JobGraph {
    /// Checks a parsed spec as a whole and resolves its modules, reporting every problem at once.
    pub fn build(spec: &JobSpec, catalog: &dyn ModuleCatalog) -> Result<JobGraph, SpecErrors> {
        let mut errors = SpecErrors::default();
        let mut by_uid: HashMap<&str, usize> = HashMap::new();
        for (i, op) in spec.operators.iter().enumerate() {
            if by_uid.insert(op.uid.as_str(), i).is_some() {
                errors.push(Some(&op.uid), "uid", "is used by more than one operator");
            }
        }
        let mut modules = BTreeMap::new();
        let mut resolved_ops = Vec::with_capacity(spec.operators.len());
        for op in &spec.operators {
            let mut op = op.clone();
            resolve_modules(&mut op, catalog, &mut modules, &mut errors);
            check_operator(&op, spec, &mut errors);
            resolved_ops.push(op);
        }

        // Edges, before ordering: (from, tag, to, input).
        let mut raw_edges = Vec::new();
        for (to, op) in resolved_ops.iter().enumerate() {
            for (input, source) in op.inputs.iter().enumerate() {
                let Some(&from) = by_uid.get(source.operator.as_str()) else {
                    errors.push(Some(&op.uid), "input", format!("operator `{}` does not exist", source.operator));
                    continue;
                };
                let upstream = &resolved_ops[from];
                if let OperatorKind::Sink(_) = upstream.kind {
                    errors.push(Some(&op.uid), "input", format!("`{}` is a sink and has no output", upstream.uid));
                    continue;
                }
                if let Some(tag) = &source.output
                    && !emits_side_output(upstream, tag)
                {
                    errors.push(Some(&op.uid), "input", format!("`{}` has no side output `{tag}`", upstream.uid));
                    continue;
                }
                raw_edges.push((from, source.output.clone(), to, input));
            }
        }
        for (i, op) in resolved_ops.iter().enumerate() {
            let read = raw_edges.iter().any(|(from, tag, _, _)| *from == i && tag.is_none());
            if !read && !matches!(op.kind, OperatorKind::Sink(_)) {
                errors.push(Some(&op.uid), "", "its output is not read by any operator; add a sink");
            }
        }

        let order = match topological_order(resolved_ops.len(), &raw_edges) {
            Ok(order) => order,
            Err(cycle) => {
                let names: Vec<&str> = cycle.iter().map(|&i| resolved_ops[i].uid.as_str()).collect();
                errors.push(None, "operators", format!("the graph has a cycle through: {}", names.join(" -> ")));
                Vec::new()
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }

        let mut position = vec![0; resolved_ops.len()];
        for (pos, &i) in order.iter().enumerate() {
            position[i] = pos;
        }
        let mut nodes: Vec<Node> = order
            .iter()
            .map(|&i| {
                let op = &resolved_ops[i];
                Node {
                    uid: op.uid.clone(),
                    parallelism: parallelism_of(op, spec),
                    kind: op.kind.clone(),
                    keyed: !op.key_by.is_empty(),
                    on_error: op.on_error.clone(),
                    inputs: Vec::new(),
                    outputs: Vec::new(),
                }
            })
            .collect();
        let mut edges = Vec::new();
        raw_edges.sort_by_key(|(_, _, to, input)| (position[*to], *input));
        for (from, tag, to, input) in raw_edges {
            let key_by = &resolved_ops[to].key_by;
            let key = match key_by.len() {
                0 => None,
                1 => Some(key_by[0].clone()),
                _ => Some(key_by[input].clone()),
            };
            let (from, to) = (position[from], position[to]);
            let partitioning = match key {
                Some(key) => Partitioning::Hash(key),
                None if nodes[from].parallelism == nodes[to].parallelism => Partitioning::Forward,
                None => Partitioning::Rebalance,
            };
            let index = edges.len();
            nodes[from].outputs.push(index);
            nodes[to].inputs.push(index);
            edges.push(Edge { from, tag, to, input, partitioning });
        }
        Ok(JobGraph {
            name: spec.name.clone(),
            max_parallelism: spec.max_parallelism,
            nodes,
            edges,
            modules,
            state_ttl: spec.state.ttl,
            state_backend: spec.state.backend,
            checkpoints: spec.checkpoints.clone(),
            restart: spec.restart.clone(),
        })
    }

    /// The node with `uid`.
    pub fn node(&self, uid: &str) -> Option<(usize, &Node)> {
        self.nodes.iter().enumerate().find(|(_, n)| n.uid == uid)
    }
}

fn parallelism_of(op: &OperatorSpec, spec: &JobSpec) -> u32 {
    if single_subtask(op) {
        return 1;
    }
    op.parallelism.unwrap_or(spec.parallelism)
}

/// Operators that run as one subtask whatever the job's default parallelism.
fn single_subtask(op: &OperatorSpec) -> bool {
    match &op.kind {
        OperatorKind::Source(s) => matches!(s.source, SourceSpec::File(_) | SourceSpec::Http),
        OperatorKind::Sink(SinkSpec::File(_)) => true,
        OperatorKind::Window(_) => op.key_by.is_empty(),
        _ => false,
    }
}

fn check_operator(op: &OperatorSpec, spec: &JobSpec, errors: &mut SpecErrors) {
    let uid = Some(op.uid.as_str());
    let inputs = op.inputs.len();
    match &op.kind {
        OperatorKind::Source(_) if inputs > 0 => errors.push(uid, "input", "a source has no input"),
        OperatorKind::Source(_) => {}
        OperatorKind::Connect(_) if inputs != 2 => {
            errors.push(uid, "input", format!("connect needs exactly two inputs, got {inputs}"))
        }
        _ if inputs == 0 => errors.push(uid, "input", "is required"),
        _ => {}
    }
    if single_subtask(op) && op.parallelism.is_some_and(|p| p > 1) {
        let why = match &op.kind {
            OperatorKind::Window(_) => "a window without key_by (a window over the whole stream)",
            _ => "this source or sink",
        };
        errors.push(uid, "parallelism", format!("{why} runs as one subtask"));
    }
    let parallelism = op.parallelism.unwrap_or(spec.parallelism);
    // As in Flink, max_parallelism bounds every operator, keyed or not.
    if !single_subtask(op) && parallelism > spec.max_parallelism {
        errors.push(
            uid,
            "parallelism",
            format!("{parallelism} exceeds the job's max_parallelism {}", spec.max_parallelism),
        );
    }
    match (&op.kind, op.key_by.len()) {
        (OperatorKind::Source(_), n) if n > 0 => errors.push(uid, "key_by", "a source cannot be keyed"),
        (_, 0 | 1) => {}
        (_, n) if n != inputs => {
            errors.push(uid, "key_by", format!("give one selector, or one per input ({inputs}), not {n}"))
        }
        _ => {}
    }
}

/// Whether `op` may emit records under side-output `tag`.
fn emits_side_output(op: &OperatorSpec, tag: &str) -> bool {
    match &op.kind {
        OperatorKind::Process(_) | OperatorKind::Connect(_) => true,
        OperatorKind::Source(_) => op.on_error == OnError::SideOutput(tag.to_string()),
        OperatorKind::Window(w) => {
            w.late_output.as_deref() == Some(tag) || matches!(w.function, WindowFunctionSpec::Process { .. })
        }
        _ => false,
    }
}

fn resolve_modules(
    op: &mut OperatorSpec,
    catalog: &dyn ModuleCatalog,
    modules: &mut BTreeMap<String, String>,
    errors: &mut SpecErrors,
) {
    let uid = op.uid.clone();
    let mut resolve = |udf: &mut UdfSpec, kind: UdfKind, field: &str| {
        let written = udf.module.to_string();
        match catalog.resolve(&udf.module, kind) {
            Ok(hash) => {
                modules.insert(written, hash.clone());
                udf.module = ModuleRef::Hash(hash);
            }
            Err(message) => errors.push(Some(&uid), field, message),
        }
    };
    for (i, key) in op.key_by.iter_mut().enumerate() {
        if let KeySpec::Module(udf) = key {
            resolve(udf, UdfKind::KeySelector, &format!("key_by[{i}]"));
        }
    }
    match &mut op.kind {
        OperatorKind::Source(source) => {
            if let TimestampSpec::Module(udf) = &mut source.watermark.timestamp {
                resolve(udf, UdfKind::TimestampAssigner, "watermark.timestamp");
            }
        }
        OperatorKind::Map(udf) => resolve(udf, UdfKind::Map, "map"),
        OperatorKind::Filter(udf) => resolve(udf, UdfKind::Filter, "filter"),
        OperatorKind::FlatMap(udf) => resolve(udf, UdfKind::FlatMap, "flat_map"),
        OperatorKind::Process(udf) => resolve(udf, UdfKind::Process, "process"),
        OperatorKind::Connect(udf) => resolve(udf, UdfKind::Process, "connect"),
        OperatorKind::Window(window) => {
            let mut aggregate = |a: &mut AggregateSpec| {
                if let AggregateSpec::Module(udf) = a {
                    resolve(udf, UdfKind::Aggregate, "aggregate");
                }
            };
            match &mut window.function {
                WindowFunctionSpec::Aggregate(a) => aggregate(a),
                WindowFunctionSpec::Reduce(udf) => resolve(udf, UdfKind::Reduce, "reduce"),
                WindowFunctionSpec::Process { pre, function } => {
                    match pre {
                        Some(PreAggregate::Aggregate(a)) => aggregate(a),
                        Some(PreAggregate::Reduce(udf)) => resolve(udf, UdfKind::Reduce, "reduce"),
                        None => {}
                    }
                    resolve(function, UdfKind::ProcessWindow, "process");
                }
            }
        }
        OperatorKind::Union | OperatorKind::Sink(_) => {}
    }
}

/// Kahn's algorithm; on a cycle, returns the nodes on it.
fn topological_order(count: usize, edges: &[(usize, Option<String>, usize, usize)]) -> Result<Vec<usize>, Vec<usize>> {
    let mut indegree = vec![0usize; count];
    for (_, _, to, _) in edges {
        indegree[*to] += 1;
    }
    let mut ready: Vec<usize> = (0..count).filter(|&i| indegree[i] == 0).rev().collect();
    let mut order = Vec::with_capacity(count);
    while let Some(node) = ready.pop() {
        order.push(node);
        for (from, _, to, _) in edges {
            if *from == node {
                indegree[*to] -= 1;
                if indegree[*to] == 0 {
                    ready.push(*to);
                }
            }
        }
    }
    if order.len() == count {
        return Ok(order);
    }
    // Walk backwards along unfinished edges from any unfinished node until a node repeats.
    let mut node = (0..count).find(|&i| indegree[i] > 0).unwrap_or(0);
    let mut path = Vec::new();
    while !path.contains(&node) {
        path.push(node);
        node = edges
            .iter()
            .find(|(from, _, to, _)| *to == node && indegree[*from] > 0)
            .map(|(from, _, _, _)| *from)
            .unwrap_or(node);
    }
    let start = path.iter().position(|&n| n == node).unwrap_or(0);
    let mut cycle: Vec<usize> = path[start..].to_vec();
    cycle.reverse();
    Err(cycle)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Catalog;
    impl ModuleCatalog for Catalog {
        fn resolve(&self, module: &ModuleRef, kind: UdfKind) -> Result<String, String> {
            match module.to_string().as_str() {
                "upper@1" if kind == UdfKind::Map => Ok("a".repeat(64)),
                "upper@1" => Err(format!("module `upper@1` does not export a {} function", kind.name())),
                other => Err(format!("unknown module `{other}`")),
            }
        }
    }

    fn build(text: &str) -> Result<JobGraph, Vec<String>> {
        let spec = JobSpec::parse(text).map_err(|e| e.0.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
        JobGraph::build(&spec, &Catalog).map_err(|e| e.0.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn orders_nodes_and_picks_partitioning() {
        let graph = build(
            r#"
name: j
parallelism: 2
operators:
  - { uid: out, sink: stdout, input: up }
  - { uid: up, map: upper@1, input: src, parallelism: 3 }
  - { uid: src, source: { generator: { events: 10 } } }
"#,
        )
        .expect("valid");
        let uids: Vec<&str> = graph.nodes.iter().map(|n| n.uid.as_str()).collect();
        assert_eq!(uids, ["src", "up", "out"]);
        assert_eq!(graph.edges[0].partitioning, Partitioning::Rebalance, "2 -> 3 subtasks");
        assert_eq!(graph.edges[1].partitioning, Partitioning::Rebalance, "3 -> 2 subtasks");
        assert_eq!(graph.modules.get("upper@1").map(String::len), Some(64));
        let OperatorKind::Map(udf) = &graph.nodes[1].kind else { panic!() };
        assert!(matches!(&udf.module, ModuleRef::Hash(h) if h.len() == 64), "modules are pinned by hash");
    }

    #[test]
    fn reports_cycles_unknown_inputs_and_modules() {
        let errors = build(
            r#"
name: j
operators:
  - { uid: src, source: { http: {} } }
  - { uid: a, map: upper@1, input: [src, c] }
  - { uid: b, filter: upper@1, input: a }
  - { uid: c, map: nothing@2, input: b }
  - { uid: d, map: upper@1, input: ghost }
  - { uid: out, sink: stdout, input: [a, d] }
"#,
        )
        .expect_err("invalid");
        let joined = errors.join("\n");
        assert!(joined.contains("operator `b`, field `filter`: module `upper@1` does not export a filter"), "{joined}");
        assert!(joined.contains("operator `c`, field `map`: unknown module `nothing@2`"), "{joined}");
        assert!(joined.contains("operator `d`, field `input`: operator `ghost` does not exist"), "{joined}");
        assert!(joined.contains("cycle through: a -> b -> c") || joined.contains("cycle through"), "{joined}");
    }

    #[test]
    fn checks_side_outputs_and_shapes() {
        let errors = build(
            r#"
name: j
operators:
  - { uid: src, source: { http: {} }, parallelism: 2 }
  - { uid: m, map: upper@1, input: src }
  - { uid: join, connect: upper@1, input: m }
  - { uid: out, sink: stdout, input: [m.late, join] }
  - { uid: more, sink: stdout, input: out }
"#,
        )
        .expect_err("invalid");
        let joined = errors.join("\n");
        for expected in [
            "operator `src`, field `parallelism`: this source or sink runs as one subtask",
            "operator `join`, field `input`: connect needs exactly two inputs, got 1",
            "operator `out`, field `input`: `m` has no side output `late`",
            "operator `more`, field `input`: `out` is a sink and has no output",
        ] {
            assert!(joined.contains(expected), "missing `{expected}` in:\n{joined}");
        }
    }

    #[test]
    fn keyed_edges_hash_by_key() {
        let graph = build(
            r#"
name: j
operators:
  - { uid: src, source: { generator: {} } }
  - { uid: w, input: src, key_by: { json: "$.key" }, window: { tumbling: 1s }, aggregate: { builtin: count } }
  - { uid: out, sink: discard, input: w }
"#,
        )
        .expect("valid");
        assert!(matches!(graph.edges[0].partitioning, Partitioning::Hash(KeySpec::Json(_))));
        assert!(graph.nodes[1].keyed);
    }

    #[test]
    fn parallelism_is_bounded_by_max_parallelism_for_every_operator() {
        let errors = build(
            "name: j\nparallelism: 1000000000\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: m, map: upper@1, input: src }\n  - { uid: out, sink: discard, input: m }",
        )
        .expect_err("too parallel");
        let joined = errors.join("\n");
        assert!(
            joined.contains("operator `m`, field `parallelism`: 1000000000 exceeds the job's max_parallelism 128"),
            "{joined}"
        );
        assert!(!joined.contains("operator `src`"), "single-subtask operators take one subtask: {joined}");
    }
}
