//! The `eddy` command: `serve`, and a thin client of the HTTP API (everything it does, curl can do too), plus
//! `demo` and `bench`.

use crate::client::{Client, SseEvent};
use crate::config::{ServerConfig, token_hash};
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "eddy", version, about = "Stream processing with user functions in WebAssembly")]
struct Cli {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: Command,
}

/// How the client reaches the server.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// The server's URL.
    #[arg(long, global = true, env = "EDDY_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// A bearer token (not needed in open mode).
    #[arg(long, global = true, env = "EDDY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Act on this tenant (with the admin token).
    #[arg(long, global = true, env = "EDDY_TENANT")]
    pub tenant: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the server.
    Serve {
        /// A TOML config file.
        #[arg(long, env = "EDDY_CONFIG")]
        config: Option<PathBuf>,
        /// Address to listen on (overrides the config).
        #[arg(long)]
        listen: Option<String>,
        /// Data folder (overrides the config).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Uploads, lists and deletes modules.
    #[command(subcommand)]
    Module(ModuleCommand),
    /// Submits, inspects and cancels jobs.
    #[command(subcommand)]
    Job(JobCommand),
    /// Takes, lists and deletes savepoints.
    #[command(subcommand)]
    Savepoint(SavepointCommand),
    /// Starts a server on embedded defaults, uploads the example UDFs and runs a word count.
    Demo {
        /// Keep the demo's data here instead of a temporary folder.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Runs a job once in this process on local files and prints its HTTP sinks' records (no server needed).
    Run(crate::run::RunArgs),
    /// Runs a standard benchmark workload (see BENCHMARKS.md) and prints one line of figures.
    Bench(crate::bench::BenchArgs),
    /// Token helpers.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The servers of the cluster (admin token).
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Acts on one server of the cluster (admin token).
    #[command(subcommand)]
    Node(NodeCommand),
    /// Compiles the component on standard input for a server (the server starts it; not for people).
    #[command(hide = true)]
    CompileWorker {
        /// Most memory the worker may use, in bytes.
        memory_bytes: u64,
    },
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Lists the nodes, their jobs, load and lease ages.
    Status,
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// Moves a node's jobs to the other nodes: each stops with a savepoint and goes on from it elsewhere; the node
    /// then takes no new work until it is restarted.
    Drain {
        /// The node's id (see `eddy cluster status`).
        node: String,
    },
}

#[derive(Debug, Subcommand)]
enum ModuleCommand {
    /// Uploads a component.
    Push {
        /// The .wasm file.
        file: PathBuf,
        /// Its name.
        #[arg(long)]
        name: String,
        /// Its version (the next whole number when omitted).
        #[arg(long)]
        version: Option<String>,
    },
    /// Lists modules.
    List,
    /// Deletes `NAME@VERSION`.
    Rm {
        /// `name@version`.
        module: String,
    },
}

#[derive(Debug, Subcommand)]
enum JobCommand {
    /// Prints a job's journal: its functions' log lines and what happened to it (started, failed, restarting).
    Logs {
        /// The job's id.
        id: String,
        /// Keep following new lines.
        #[arg(short, long)]
        follow: bool,
    },
    /// Submits a job spec (YAML or JSON file, or - for standard input).
    Submit {
        /// The spec.
        file: PathBuf,
        /// Start from this savepoint.
        #[arg(long)]
        from_savepoint: Option<String>,
        /// With --from-savepoint: drop state of operators the job no longer has.
        #[arg(long)]
        allow_non_restored_state: bool,
    },
    /// Stops a job with a savepoint and prints the savepoint's id.
    Stop {
        /// The job's id.
        id: String,
        /// Take a savepoint (always: a stop takes one; `cancel` stops without).
        #[arg(long)]
        savepoint: bool,
        /// First advance the watermark to the end of time, so that every event-time window and timer fires
        /// (for a job that stops for good).
        #[arg(long)]
        drain: bool,
    },
    /// Upgrades a running job's modules through a savepoint, checked first and rolled back if the new modules
    /// fail; waits for the outcome.
    Upgrade {
        /// The job's id.
        id: String,
        /// A new module version, `name@version` (repeat for several modules).
        #[arg(long = "module", required = true)]
        modules: Vec<String>,
        /// Let the new modules stop using state the old ones kept.
        #[arg(long)]
        allow_non_restored_state: bool,
        /// Print the upgrade's number once it is checked and started, without waiting for its outcome.
        #[arg(long)]
        no_wait: bool,
    },
    /// Lists jobs.
    List,
    /// Shows a job's state and operators.
    Status {
        /// The job's id.
        id: String,
    },
    /// Cancels a job.
    Cancel {
        /// The job's id.
        id: String,
    },
    /// Prints what an HTTP sink emits, following it until the job ends.
    Output {
        /// The job's id.
        id: String,
        /// The sink's uid (the job's only HTTP sink when omitted).
        sink: Option<String>,
        /// Print values as they are instead of JSON envelopes.
        #[arg(long)]
        raw: bool,
    },
    /// Sends JSON lines from a file (or - for standard input) to an HTTP source.
    Input {
        /// The job's id.
        id: String,
        /// The source's uid.
        source: String,
        /// The file.
        file: PathBuf,
        /// Close the input afterwards.
        #[arg(long)]
        close: bool,
    },
}

#[derive(Debug, Subcommand)]
enum SavepointCommand {
    /// Takes a savepoint of a running job and prints its id.
    Trigger {
        /// The job's id.
        job: String,
    },
    /// Lists savepoints.
    List,
    /// Prints what a savepoint holds for one key of one operator.
    State {
        /// The savepoint's id.
        savepoint: String,
        /// The operator's uid.
        operator: String,
        /// The key (as `key_by` made it).
        key: String,
    },
    /// Downloads a savepoint's files as a tar archive.
    Download {
        /// The savepoint's id.
        id: String,
        /// Where to write it (`savepoint-<id>.tar` when omitted).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Deletes a savepoint.
    Rm {
        /// The savepoint's id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Prints the SHA-256 of a token, for `token_sha256` in the server config.
    Hash {
        /// The token.
        token: String,
    },
}

/// Runs the command line.
pub fn main() -> ExitCode {
    match run_args(std::env::args_os()) {
        Ok(()) => ExitCode::SUCCESS,
        // clap has said what was wrong with the arguments.
        Err(e) if e.is::<UsageError>() => ExitCode::from(2),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The arguments were not understood; clap printed why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(String);

/// Runs `eddy` with `args` (the first is the program name), on a runtime of its own.
pub fn run_args<I, T>(args: I) -> anyhow::Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version end here too: printed as clap would, they are a success.
            let _ = e.print();
            if e.use_stderr() {
                return Err(UsageError(e.kind().to_string()).into());
            }
            return Ok(());
        }
    };
    if let Command::CompileWorker { memory_bytes } = &cli.command {
        // No runtime and no logging: a worker compiles, writes, and exits.
        return eddy_wasm_host::run_worker(*memory_bytes).map_err(anyhow::Error::msg);
    }
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(cli))
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EDDY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,wasmtime=warn,cranelift=warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

fn read_input(file: &PathBuf) -> anyhow::Result<String> {
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
        return Ok(text);
    }
    std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let c = &cli.connection;
    let client = Client::new(&c.server, c.token.clone(), c.tenant.clone());
    match cli.command {
        Command::Serve { config, listen, data_dir } => serve(config, listen, data_dir).await,
        Command::Module(command) => module(&client, command).await,
        Command::Job(command) => job(&client, command).await,
        Command::Savepoint(command) => savepoint(&client, command).await,
        Command::Demo { data_dir } => crate::demo::run(data_dir).await,
        Command::Run(args) => crate::run::run(args).await,
        Command::Bench(args) => {
            let line = tokio::task::spawn_blocking(move || crate::bench::run(&args)).await??;
            println!("{line}");
            Ok(())
        }
        Command::Cluster(ClusterCommand::Status) => print_cluster(&client.cluster().await?),
        Command::Node(NodeCommand::Drain { node }) => {
            for moved in client.drain_node(&node).await?.as_array().into_iter().flatten() {
                let job = format!(
                    "{}/{}",
                    moved["tenant"].as_str().unwrap_or_default(),
                    moved["job"].as_str().unwrap_or_default()
                );
                match (moved["savepoint"].as_str(), moved["note"].as_str()) {
                    (Some(savepoint), _) => println!("{job}: moved, going on from savepoint {savepoint}"),
                    (None, note) => {
                        println!("{job}: moved without a savepoint ({})", note.unwrap_or("no reason given"))
                    }
                }
            }
            Ok(())
        }
        Command::Token(TokenCommand::Hash { token }) => {
            println!("{}", token_hash(&token));
            Ok(())
        }
        Command::CompileWorker { memory_bytes } => eddy_wasm_host::run_worker(memory_bytes).map_err(anyhow::Error::msg),
    }
}

/// One journal line for people: `time  udf [level] text` or `time  job event: text`; false once stdout is gone.
fn print_journal_line(data: &str) -> bool {
    use std::io::Write;
    let Ok(line) = serde_json::from_str::<serde_json::Value>(data) else {
        return writeln!(std::io::stdout(), "{data}").is_ok();
    };
    let text = line["text"].as_str().unwrap_or_default();
    let ts = line["ts"].as_i64().unwrap_or_default();
    let shown = match line["udf"].as_str() {
        Some(udf) => format!("{ts}  {udf} [{}] {text}", line["level"].as_str().unwrap_or("info")),
        None => format!("{ts}  job {}: {text}", line["event"].as_str().unwrap_or("event")),
    };
    writeln!(std::io::stdout(), "{shown}").is_ok()
}

fn print_cluster(view: &serde_json::Value) -> anyhow::Result<()> {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    println!("control plane: {}, answered by {}", text(&view["database"]), text(&view["this_node"]));
    println!(
        "{:<20} {:<6} {:>6} {:>9} {:>14} {:>10}  URL",
        "NODE", "ALIVE", "JOBS", "SUBTASKS", "MEMORY MB", "LEASE AGE"
    );
    for node in view["nodes"].as_array().into_iter().flatten() {
        let memory = format!("{}/{}", node["memory_used_mb"], node["memory_mb"]);
        println!(
            "{:<20} {:<6} {:>6} {:>9} {:>14} {:>9.1}s  {}",
            text(&node["node_id"]),
            if node["alive"].as_bool() == Some(true) { "yes" } else { "no" },
            node["jobs"].as_array().map_or(0, Vec::len),
            node["subtasks"],
            memory,
            node["lease_age_ms"].as_f64().unwrap_or_default() / 1000.0,
            text(&node["url"]),
        );
        for job in node["jobs"].as_array().into_iter().flatten() {
            println!("    {}", text(job));
        }
    }
    Ok(())
}

async fn serve(config: Option<PathBuf>, listen: Option<String>, data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let env = |name: &str| match (name, &listen, &data_dir) {
        ("EDDY_LISTEN", Some(l), _) => Some(l.clone()),
        ("EDDY_DATA_DIR", _, Some(d)) => Some(d.display().to_string()),
        _ => std::env::var(name).ok(),
    };
    let mut config = ServerConfig::load(config.as_deref(), env)
        .map_err(|errors| anyhow::anyhow!("the configuration has problems:\n  - {}", errors.join("\n  - ")))?;
    // Uploads compile in workers that run this binary, bounded in time and memory.
    config.compile_worker = std::env::current_exe().ok();
    if config.open_mode() {
        tracing::info!("open mode: no tokens needed; everything belongs to the tenant `default`");
    }
    let server = crate::server::start(config).await?;
    shutdown_signal().await;
    tracing::info!("shutting down: stopping jobs (they resume on the next start)");
    server.shutdown().await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

async fn module(client: &Client, command: ModuleCommand) -> anyhow::Result<()> {
    match command {
        ModuleCommand::Push { file, name, version } => {
            let bytes = std::fs::read(&file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            let record = client.push_module(&name, version.as_deref(), bytes).await?;
            println!(
                "{}@{}  {}  sha256:{}",
                record["name"].as_str().unwrap_or_default(),
                record["version"].as_str().unwrap_or_default(),
                kinds(&record),
                record["hash"].as_str().unwrap_or_default()
            );
        }
        ModuleCommand::List => {
            let list = client.modules().await?;
            println!("{:<24} {:<10} {:<18} {:>10}  SHA256", "NAME", "VERSION", "KINDS", "BYTES");
            for m in list.as_array().into_iter().flatten() {
                println!(
                    "{:<24} {:<10} {:<18} {:>10}  {}",
                    m["name"].as_str().unwrap_or_default(),
                    m["version"].as_str().unwrap_or_default(),
                    kinds(m),
                    m["size"],
                    short(m["hash"].as_str().unwrap_or_default())
                );
            }
        }
        ModuleCommand::Rm { module } => {
            let (name, version) =
                module.split_once('@').ok_or_else(|| anyhow::anyhow!("give the module as name@version"))?;
            client.delete_module(name, version).await?;
            println!("deleted {name}@{version}");
        }
    }
    Ok(())
}

async fn savepoint(client: &Client, command: SavepointCommand) -> anyhow::Result<()> {
    match command {
        SavepointCommand::Trigger { job } => {
            let savepoint = client.savepoint(&job, false).await?;
            println!("{}", savepoint["id"].as_str().unwrap_or_default());
        }
        SavepointCommand::List => {
            let list = client.savepoints().await?;
            println!("{:<34} {:<34} {:>10} JOB NAME", "ID", "JOB", "CHECKPOINT");
            for s in list.as_array().into_iter().flatten() {
                println!(
                    "{:<34} {:<34} {:>10} {}",
                    s["id"].as_str().unwrap_or_default(),
                    s["job"].as_str().unwrap_or_default(),
                    s["checkpoint"],
                    s["job_name"].as_str().unwrap_or_default()
                );
            }
        }
        SavepointCommand::State { savepoint, operator, key } => {
            let state = client.savepoint_state(&savepoint, &operator, &key).await?;
            println!("{}", serde_json::to_string_pretty(&state)?);
        }
        SavepointCommand::Download { id, output } => {
            let archive = client.download_savepoint(&id).await?;
            let path = output.unwrap_or_else(|| PathBuf::from(format!("savepoint-{id}.tar")));
            std::fs::write(&path, &archive).with_context(|| format!("cannot write {}", path.display()))?;
            println!("{} ({} bytes)", path.display(), archive.len());
        }
        SavepointCommand::Rm { id } => {
            client.delete_savepoint(&id).await?;
            println!("deleted {id}");
        }
    }
    Ok(())
}

fn kinds(record: &Value) -> String {
    record["kinds"]
        .as_array()
        .map(|k| k.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

async fn job(client: &Client, command: JobCommand) -> anyhow::Result<()> {
    match command {
        JobCommand::Submit { file, from_savepoint, allow_non_restored_state } => {
            let spec = read_input(&file)?;
            let view = match from_savepoint {
                Some(savepoint) => client.submit_from(&spec, &savepoint, allow_non_restored_state).await?,
                None => client.submit(&spec).await?,
            };
            println!("{}", view["id"].as_str().unwrap_or_default());
            print_endpoints(&view);
        }
        JobCommand::Stop { id, savepoint: _, drain } => {
            let savepoint = client.savepoint_with(&id, true, drain).await?;
            println!("{}", savepoint["id"].as_str().unwrap_or_default());
        }
        JobCommand::Upgrade { id, modules, allow_non_restored_state, no_wait } => {
            let started = client.upgrade(&id, &modules, allow_non_restored_state).await?;
            let number = started["number"].as_u64().unwrap_or_default();
            for warning in started["warnings"].as_array().into_iter().flatten() {
                eprintln!("warning: {}", warning.as_str().unwrap_or_default());
            }
            if no_wait {
                println!("upgrade {number} started");
                return Ok(());
            }
            let upgrade = loop {
                let status = client.job(&id).await?;
                let found = status["upgrades"].as_array().and_then(|u| u.iter().find(|u| u["number"] == number));
                if let Some(upgrade) = found.filter(|u| u["outcome"] != "in_progress") {
                    break upgrade.clone();
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            };
            let outcome = upgrade["outcome"].as_str().unwrap_or_default();
            let downtime = upgrade["downtime_ms"].as_u64().map(|ms| format!(" (down {ms} ms)")).unwrap_or_default();
            match outcome {
                "upgraded" => println!("upgrade {number}: upgraded{downtime}"),
                other => anyhow::bail!(
                    "upgrade {number}: {}: {}",
                    other.replace('_', " "),
                    upgrade["reason"].as_str().unwrap_or("no reason given")
                ),
            }
        }
        JobCommand::List => {
            let list = client.jobs().await?;
            println!("{:<34} {:<10} NAME", "ID", "STATE");
            for j in list.as_array().into_iter().flatten() {
                println!(
                    "{:<34} {:<10} {}",
                    j["id"].as_str().unwrap_or_default(),
                    j["state"].as_str().unwrap_or_default(),
                    j["name"].as_str().unwrap_or_default()
                );
            }
        }
        JobCommand::Status { id } => print_status(&client.job(&id).await?),
        JobCommand::Cancel { id } => {
            let view = client.cancel(&id).await?;
            println!("{} {}", id, view["state"].as_str().unwrap_or_default());
        }
        JobCommand::Logs { id, follow } => {
            client
                .follow_logs(&id, follow, |event: SseEvent| match event.event.as_str() {
                    "end" => false,
                    "lagged" => {
                        eprintln!("({})", event.data);
                        true
                    }
                    _ => print_journal_line(&event.data),
                })
                .await?;
        }
        JobCommand::Output { id, sink, raw } => {
            let sink = match sink {
                Some(s) => s,
                None => only_output(&client.job(&id).await?)?,
            };
            client
                .follow_output(&id, &sink, raw, |event: SseEvent| match event.event.as_str() {
                    "end" => false,
                    "lagged" => {
                        eprintln!("({})", event.data);
                        true
                    }
                    // Stop quietly when the reader goes away (`eddy job output ... | head`).
                    _ => writeln!(std::io::stdout(), "{}", event.data).is_ok(),
                })
                .await?;
        }
        JobCommand::Input { id, source, file, close } => {
            let answer = client.ingest(&id, &source, read_input(&file)?).await?;
            println!("accepted {}", answer["accepted"]);
            if close {
                client.close_input(&id, &source).await?;
                println!("closed {source}");
            }
        }
    }
    Ok(())
}

fn only_output(view: &Value) -> anyhow::Result<String> {
    let outputs: Vec<&str> = view["outputs"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    match outputs.as_slice() {
        [one] => Ok(one.to_string()),
        [] => anyhow::bail!("the job has no HTTP sink"),
        many => anyhow::bail!("the job has several HTTP sinks; name one of: {}", many.join(", ")),
    }
}

fn print_endpoints(view: &Value) {
    let id = view["id"].as_str().unwrap_or_default();
    for input in view["inputs"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        eprintln!("  input  {input}: POST /v1/jobs/{id}/inputs/{input}   (eddy job input {id} {input} FILE)");
    }
    for output in view["outputs"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        eprintln!("  output {output}: GET /v1/jobs/{id}/outputs/{output}  (eddy job output {id} {output})");
    }
}

fn print_status(view: &Value) {
    println!(
        "{}  {}  {}",
        view["id"].as_str().unwrap_or_default(),
        view["name"].as_str().unwrap_or_default(),
        view["state"].as_str().unwrap_or_default()
    );
    if let Some(error) = view.get("error").filter(|e| !e.is_null()) {
        println!("error: {}", error["message"].as_str().unwrap_or_default());
        if let Some(op) = error["operator"].as_str() {
            println!("  in operator {op}");
        }
        for line in error["logs"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            println!("  | {line}");
        }
    }
    println!("{:<20} {:<10} {:>3} {:>12} {:>12} {:>16}  INPUT", "OPERATOR", "KIND", "P", "IN", "OUT", "WATERMARK");
    for op in view["operators"].as_array().into_iter().flatten() {
        let inputs: Vec<&str> = op["inputs"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let watermark = op["watermark"].as_i64().map_or("-".to_string(), |w| w.to_string());
        println!(
            "{:<20} {:<10} {:>3} {:>12} {:>12} {:>16}  {}",
            op["uid"].as_str().unwrap_or_default(),
            op["kind"].as_str().unwrap_or_default(),
            // JSON values ignore widths: format them as text first.
            op["parallelism"].to_string(),
            op["records_in"].to_string(),
            op["records_out"].to_string(),
            watermark,
            inputs.join(",")
        );
    }
    let upgraded = view["upgrades"].as_array().is_some_and(|u| !u.is_empty());
    for (written, running) in view["running_modules"].as_object().into_iter().flatten().filter(|_| upgraded) {
        if running.as_str() != Some(written) {
            println!("module {written} runs as {}", running.as_str().unwrap_or_default());
        }
    }
    for upgrade in view["upgrades"].as_array().into_iter().flatten() {
        let modules: Vec<&str> =
            upgrade["modules"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let mut line = format!(
            "upgrade {} to {}: {}",
            upgrade["number"],
            modules.join(", "),
            upgrade["outcome"].as_str().unwrap_or_default().replace('_', " ")
        );
        if let Some(ms) = upgrade["downtime_ms"].as_u64() {
            line.push_str(&format!(", down {ms} ms"));
        }
        if let Some(savepoint) = upgrade["savepoint"].as_str() {
            line.push_str(&format!(", savepoint {savepoint}"));
        }
        if let Some(reason) = upgrade["reason"].as_str() {
            line.push_str(&format!(": {reason}"));
        }
        println!("{line}");
    }
    print_endpoints(view);
}
