//! `eddy run job.yaml --module name=path.wasm --input src=file.jsonl`: a job run once in this process, on local
//! files, without a server to set up. Each HTTP source reads its `--input` file (one record per line) and then
//! ends; once the job finished, every HTTP sink's values are printed, one per line, in the order the sink wrote
//! them (prefixed with the sink's uid when the job has several). A UDF author tries a change in seconds, in any
//! language: the same checks, engine and limits as `eddy serve`, in a throwaway data folder.
//!
//! An HTTP sink is a live tail that a slow reader may fall behind; here every value must be printed, so the HTTP
//! sinks are run as file sinks in the throwaway folder and their files printed at the end.

use crate::client::Client;
use crate::config::ServerConfig;
use anyhow::{Context, bail};
use eddy_engine::spec::{JobSpec, OperatorKind, SinkSpec, SourceSpec};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Records posted at a time.
const CHUNK_LINES: usize = 10_000;

/// What to run.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The job spec (YAML).
    pub spec: PathBuf,
    /// A module the spec names, as `name=path.wasm` (the name defaults to the file's stem); repeat for more.
    #[arg(long = "module")]
    pub modules: Vec<String>,
    /// What an HTTP source reads, as `uid=file` with one record per line; sources without one read nothing.
    #[arg(long = "input")]
    pub inputs: Vec<String>,
}

/// The folder, among the tenant's files, that an HTTP sink writes to instead.
fn sink_folder(uid: &str) -> String {
    format!("eddy-run/{uid}")
}

/// The spec with each HTTP sink writing files instead, as JSON (which a spec may be).
fn with_file_sinks(text: &str, sinks: &[String]) -> anyhow::Result<String> {
    let mut document = eddy_engine::spec::document(text).map_err(anyhow::Error::msg)?;
    let operators = document.get_mut("operators").and_then(|o| o.as_array_mut()).context("no operators")?;
    for operator in operators {
        let uid = operator.get("uid").and_then(|u| u.as_str()).unwrap_or_default().to_string();
        if sinks.contains(&uid)
            && let Some(sink) = operator.get_mut("sink")
        {
            *sink = serde_json::json!({ "file": { "path": sink_folder(&uid) } });
        }
    }
    Ok(serde_json::to_string(&document)?)
}

/// The lines a file sink wrote into `folder`, in order: by subtask, then part.
fn written_lines(folder: &Path) -> anyhow::Result<Vec<String>> {
    let mut parts = Vec::new();
    for entry in std::fs::read_dir(folder).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let numbers = name.strip_prefix("part-").and_then(|r| r.strip_suffix(".jsonl")).and_then(|r| {
            let (subtask, part) = r.split_once('-')?;
            Some((subtask.parse::<u64>().ok()?, part.parse::<u64>().ok()?))
        });
        if let Some(order) = numbers {
            parts.push((order, entry.path()));
        }
    }
    parts.sort();
    let mut lines = Vec::new();
    for (_, path) in parts {
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        lines.extend(text.lines().map(str::to_string));
    }
    Ok(lines)
}

/// `name=path` (or a path whose stem is the name).
fn named(arg: &str, what: &str) -> anyhow::Result<(String, PathBuf)> {
    match arg.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => Ok((name.to_string(), PathBuf::from(path))),
        Some(_) => bail!("--{what} `{arg}`: give name=path"),
        None => {
            let path = PathBuf::from(arg);
            let stem =
                path.file_stem().and_then(|s| s.to_str()).context(format!("--{what} `{arg}`: give name=path"))?;
            Ok((stem.to_string(), path))
        }
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Runs the job to its end and prints its HTTP sinks' records; fails with the job's error if it fails.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let text = String::from_utf8(read(&args.spec)?).context("the spec is not UTF-8")?;
    let spec = JobSpec::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", args.spec.display()))?;
    let mut sources = Vec::new();
    let mut sinks = Vec::new();
    for operator in &spec.operators {
        match &operator.kind {
            OperatorKind::Source(source) if matches!(source.source, SourceSpec::Http) => {
                sources.push(operator.uid.clone())
            }
            OperatorKind::Sink(SinkSpec::Http) => sinks.push(operator.uid.clone()),
            _ => {}
        }
    }
    let mut inputs = BTreeMap::new();
    for arg in &args.inputs {
        let (uid, path) = named(arg, "input")?;
        if !sources.contains(&uid) {
            bail!("--input {uid}: the job has no HTTP source `{uid}` (its HTTP sources: {})", sources.join(", "));
        }
        inputs.insert(uid, path);
    }
    let mut modules = Vec::new();
    for arg in &args.modules {
        let (name, path) = named(arg, "module")?;
        modules.push((name, read(&path)?));
    }

    let data = tempfile::tempdir()?;
    let config =
        ServerConfig { listen: "127.0.0.1:0".parse()?, data_dir: data.path().to_path_buf(), ..ServerConfig::default() };
    let files = config.files_dir().join(crate::config::DEFAULT_TENANT);
    let server = crate::server::start(config).await?;
    let client = Client::new(&server.url(), None, None);
    let outcome = drive(&client, &with_file_sinks(&text, &sinks)?, modules, inputs, &sources).await;
    server.shutdown().await?;
    outcome?;
    let mut out = std::io::stdout().lock();
    for sink in &sinks {
        for line in written_lines(&files.join(sink_folder(sink)))? {
            if sinks.len() > 1 {
                writeln!(out, "{sink}\t{line}")?;
            } else {
                writeln!(out, "{line}")?;
            }
        }
    }
    Ok(())
}

async fn drive(
    client: &Client,
    spec: &str,
    modules: Vec<(String, Vec<u8>)>,
    inputs: BTreeMap<String, PathBuf>,
    sources: &[String],
) -> anyhow::Result<()> {
    for (name, bytes) in modules {
        client.push_module(&name, None, bytes).await.map_err(|e| anyhow::anyhow!("module {name}: {e}"))?;
    }
    let job = client.submit(spec).await.map_err(|e| anyhow::anyhow!("the job was refused: {e}"))?;
    let id = job["id"].as_str().context("a job id")?.to_string();
    for source in sources {
        if let Some(path) = inputs.get(source) {
            let text = String::from_utf8(read(path)?).with_context(|| format!("{} is not UTF-8", path.display()))?;
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            for chunk in lines.chunks(CHUNK_LINES) {
                client.ingest(&id, source, chunk.join("\n")).await.map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
            }
        }
        client.close_input(&id, source).await.map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
    }
    let status = loop {
        let status = client.job(&id).await?;
        if !matches!(status["state"].as_str(), Some("running" | "restarting" | "starting" | "queued")) {
            break status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    match status["state"].as_str() {
        Some("finished") => Ok(()),
        Some(state) => bail!(
            "the job {state}: {}",
            status["error"]["message"].as_str().or(status["error"].as_str()).unwrap_or("no reason given")
        ),
        None => bail!("the job's state is unknown: {status}"),
    }
}
