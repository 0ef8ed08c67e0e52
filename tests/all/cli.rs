//! The `eddy` command as a client of a running server.

use crate::support::{Rust, TestServer, eddy_binary, example, examples, wait_ended};
use std::path::Path;

/// Runs `eddy <args>` against the test server.
async fn eddy(server: &TestServer, args: &[&str]) -> anyhow::Result<()> {
    let mut full = vec!["eddy".to_string(), "--server".to_string(), server.url.clone()];
    full.extend(args.iter().map(|a| a.to_string()));
    tokio::task::spawn_blocking(move || eddy_server::cli::run_args(full)).await?
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_drives_modules_and_jobs() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = dir.path().join("lower.wasm");
    std::fs::write(&wasm, example(Rust, "lowercase").await).expect("write");
    let path = |p: &Path| p.display().to_string();
    eddy(&server, &["module", "push", &path(&wasm), "--name", "lower", "--version", "7"]).await.expect("push");
    let modules = server.client.modules().await.expect("list");
    assert_eq!((modules[0]["name"].as_str(), modules[0]["version"].as_str()), (Some("lower"), Some("7")));
    eddy(&server, &["module", "list"]).await.expect("list");

    let spec = dir.path().join("job.yaml");
    std::fs::write(&spec, "name: cli\noperators:\n  - { uid: src, source: { http: {} } }\n  - { uid: m, map: lower@7, input: src }\n  - { uid: out, sink: http, input: m }\n").expect("write");
    eddy(&server, &["job", "submit", &path(&spec)]).await.expect("submit");
    let jobs = server.client.jobs().await.expect("jobs");
    let id = jobs[0]["id"].as_str().expect("id").to_string();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "LOUD\nQuiet\n").expect("write");
    eddy(&server, &["job", "input", &id, "src", &path(&input), "--close"]).await.expect("input");
    eddy(&server, &["job", "output", &id]).await.expect("output follows the stream to its end");
    assert_eq!(wait_ended(&server.client, &id).await["state"], "finished");
    eddy(&server, &["job", "status", &id]).await.expect("status");
    eddy(&server, &["job", "list"]).await.expect("list");

    let refused = eddy(&server, &["module", "rm", "lower@8"]).await.expect_err("no such version");
    assert!(refused.to_string().contains("404"), "{refused}");
    eddy(&server, &["module", "rm", "lower@7"]).await.expect("deleted (the job has finished)");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "name: bad\noperators: []\n").expect("write");
    let invalid = eddy(&server, &["job", "submit", &path(&bad)]).await.expect_err("invalid spec");
    assert!(invalid.to_string().contains("invalid_spec"), "{invalid}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_hashes_tokens_and_reports_an_unreachable_server() {
    let hashed = tokio::task::spawn_blocking(|| eddy_server::cli::run_args(["eddy", "token", "hash", "secret"])).await;
    assert!(hashed.expect("thread").is_ok());
    let down = tokio::task::spawn_blocking(|| {
        eddy_server::cli::run_args(["eddy", "--server", "http://127.0.0.1:9", "module", "list"])
    })
    .await
    .expect("thread")
    .expect_err("nothing listens there");
    assert!(down.to_string().contains("cannot reach the server"), "{down}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_stops_a_job_with_a_savepoint_and_submits_from_it() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |p: &Path| p.display().to_string();
    let spec = dir.path().join("job.yaml");
    std::fs::write(&spec, "name: counts\ncheckpoints: { interval: 1h }\noperators:\n  - { uid: src, source: { http: {} }, watermark: { out_of_orderness: 0ms, timestamp: { json: \"$.ts\" } } }\n  - { uid: w, input: src, key_by: { json: \"$.k\" }, window: { tumbling: 1h }, aggregate: { builtin: count } }\n  - { uid: out, sink: http, input: w }\n").expect("write");
    eddy(&server, &["job", "submit", &path(&spec)]).await.expect("submit");
    let id = server.client.jobs().await.expect("jobs")[0]["id"].as_str().expect("id").to_string();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"k\":\"a\",\"ts\":1}\n{\"k\":\"a\",\"ts\":2}\n").expect("write");
    eddy(&server, &["job", "input", &id, "src", &path(&input)]).await.expect("input");
    eddy(&server, &["job", "stop", &id]).await.expect("stop with a savepoint");
    let savepoints = server.client.savepoints().await.expect("list");
    let savepoint = savepoints[0]["id"].as_str().expect("a savepoint").to_string();
    eddy(&server, &["savepoint", "list"]).await.expect("list");
    eddy(&server, &["savepoint", "state", &savepoint, "w", "a"]).await.expect("state of a key");
    eddy(&server, &["job", "submit", &path(&spec), "--from-savepoint", &savepoint]).await.expect("submit from it");
    let jobs = server.client.jobs().await.expect("jobs");
    let resumed = jobs.as_array().into_iter().flatten().find(|j| j["state"] == "running").expect("the new job");
    let resumed = resumed["id"].as_str().expect("id").to_string();
    eddy(&server, &["job", "input", &resumed, "src", &path(&input), "--close"]).await.expect("input");
    let counts = crate::support::output(&server.client, &resumed, "out").await;
    assert_eq!(counts.len(), 1, "{counts:?}");
    assert_eq!(counts[0]["value"]["count"], 4, "two counted before the savepoint, two after");
    eddy(&server, &["savepoint", "rm", &savepoint]).await.expect("rm");
    let gone = eddy(&server, &["savepoint", "state", &savepoint, "w", "a"]).await.expect_err("deleted");
    assert!(gone.to_string().contains("404"), "{gone}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_upgrades_a_job_downloads_its_savepoint_and_stops_it_with_drain() {
    let server = TestServer::start().await;
    let c = &server.client;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |p: &Path| p.display().to_string();
    for (version, name) in [("1", "visit-counter"), ("2", "visit-counter-v2"), ("3", "visit-counter-retyped")] {
        let wasm = dir.path().join(format!("{name}.wasm"));
        std::fs::write(&wasm, example(Rust, name).await).expect("write");
        eddy(&server, &["module", "push", &path(&wasm), "--name", "visits", "--version", version]).await.expect("push");
    }
    let spec = examples().repo().join("udfs/jobs/visits.yaml");
    eddy(&server, &["job", "submit", &path(&spec)]).await.expect("submit the example");
    let id = c.jobs().await.expect("jobs")[0]["id"].as_str().expect("id").to_string();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"user\":\"ann\",\"page\":\"/\"}\n").expect("write");
    eddy(&server, &["job", "input", &id, "clicks", &path(&input)]).await.expect("input");

    let refused = eddy(&server, &["job", "upgrade", &id, "--module", "visits@3"]).await.expect_err("incompatible");
    assert!(refused.to_string().contains("incompatible_upgrade"), "{refused}");
    eddy(&server, &["job", "upgrade", &id, "--module", "visits@2"]).await.expect("upgraded");
    let status = c.job(&id).await.expect("status");
    assert_eq!(status["upgrades"][0]["outcome"], "upgraded", "{status:#}");
    eddy(&server, &["job", "status", &id]).await.expect("status shows the upgrade");
    let savepoint = status["upgrades"][0]["savepoint"].as_str().expect("savepoint").to_string();
    let archive = dir.path().join("sp.tar");
    eddy(&server, &["savepoint", "download", &savepoint, "-o", &path(&archive)]).await.expect("download");
    assert!(std::fs::metadata(&archive).expect("archive").len() > 0);

    eddy(&server, &["job", "input", &id, "clicks", &path(&input)]).await.expect("input");
    eddy(&server, &["job", "stop", &id, "--savepoint", "--drain"]).await.expect("stop with drain");
    let last = crate::support::output(c, &id, "out").await.last().cloned().expect("output");
    assert_eq!((last["value"]["visits"].as_u64(), last["value"]["logic"].as_str()), (Some(2), Some("v2")), "{last}");
}

/// `--help` anywhere prints the help and succeeds; arguments clap cannot read fail with its message only.
#[test]
fn help_succeeds_and_bad_arguments_fail_with_clap_s_message() {
    let eddy = crate::support::eddy_binary();
    for args in [&["--help"][..], &["job", "--help"], &["job", "submit", "--help"], &["--version"]] {
        let run = std::process::Command::new(&eddy).args(args).output().expect("eddy runs");
        let (stdout, stderr) = (String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
        assert!(run.status.success(), "{args:?}: {:?}\n{stderr}", run.status);
        assert!(!stdout.is_empty() && !stderr.contains("error"), "{args:?}: {stdout}\n{stderr}");
    }
    let bad = std::process::Command::new(&eddy).arg("--no-such-flag").output().expect("eddy runs");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--no-such-flag") && stderr.matches("error").count() == 1, "{stderr}");
}

/// `eddy run`: a job run once in-process on a local file, its HTTP sink's values printed in order; a function that
/// panics fails the run with the function's message and a non-zero exit.
#[tokio::test(flavor = "multi_thread")]
async fn eddy_run_runs_a_job_on_local_files_and_prints_its_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    std::fs::write(path("lowercase.wasm"), example(Rust, "lowercase").await).expect("module");
    std::fs::write(path("faults.wasm"), example(Rust, "test-faults").await).expect("module");
    let spec = |module: &str| {
        format!(
            "name: local\noperators:\n  - {{ uid: src, source: {{ http: {{}} }} }}\n  - {{ uid: m, map: {module}, input: src }}\n  - {{ uid: out, sink: http, input: m }}\n"
        )
    };
    std::fs::write(path("lower.yaml"), spec("lowercase")).expect("spec");
    std::fs::write(path("faults.yaml"), spec("faults")).expect("spec");
    let lines: Vec<String> = (0..25_000).map(|n| format!("{{\"Text\":\"Line {n} IN CAPITALS\"}}")).collect();
    std::fs::write(path("in.jsonl"), lines.join("\n")).expect("input");

    let eddy =
        |args: Vec<String>| std::process::Command::new(eddy_binary()).args(args).env("EDDY_LOG", "error").output();
    let run = eddy(vec![
        "run".into(),
        path("lower.yaml"),
        "--module".into(),
        path("lowercase.wasm"),
        "--input".into(),
        format!("src={}", path("in.jsonl")),
    ])
    .expect("eddy run");
    let (stdout, stderr) = (String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "{stderr}");
    let printed: Vec<&str> = stdout.lines().collect();
    let expected: Vec<String> = lines.iter().map(|l| l.to_lowercase()).collect();
    let first_difference = printed.iter().zip(&expected).position(|(p, e)| p != e);
    assert_eq!((printed.len(), first_difference), (expected.len(), None), "every value, lower-cased, in order");

    std::fs::write(path("panic.jsonl"), "{\"n\":1}\npanic\n").expect("input");
    let failed = eddy(vec![
        "run".into(),
        path("faults.yaml"),
        "--module".into(),
        format!("faults={}", path("faults.wasm")),
        "--input".into(),
        format!("src={}", path("panic.jsonl")),
    ])
    .expect("eddy run");
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success(), "a failed job fails the run");
    assert!(stderr.contains("the record asked for a panic"), "the function's message: {stderr}");
    let unknown = eddy(vec!["run".into(), path("lower.yaml"), "--input".into(), "nope=x".into()]).expect("eddy run");
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(!unknown.status.success() && stderr.contains("no HTTP source `nope`"), "{stderr}");
}
