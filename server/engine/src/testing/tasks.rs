//! Golden-test input run through real tasks: each copy of the operator under test runs in a task thread of its
//! own, fed over one-batch channels by a feeder task, every thread bound to one CPU governor with few run slots.
//! So the window cases exercise the task loop, backpressure and the governor, not only the operator.

use super::{Command, collect, commands, operator_for};
use crate::checkpoint::{Barrier, CheckpointId, ChunkWriter, OperatorSnapshot};
use crate::control::Control;
use crate::error::TaskError;
use crate::operator::{OpContext, Operator};
use crate::runtime::OperatorMetrics;
use crate::runtime::chain::{Chain, Link, TaskCheckpoints};
use crate::runtime::channel::{ChannelSender, Message, channel};
use crate::runtime::govern::{self, CpuGovernor};
use crate::runtime::input_task::{Gate, run_task};
use crate::time::ManualClock;
use eddy_codec::Batch;
use parking_lot::Mutex;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The operator under test, writing what it emits to output lines (in the order a harness would) and noting when
/// the feeder's closing barrier reached it.
struct Recorder {
    inner: Box<dyn Operator>,
    lines: Arc<Mutex<Vec<Value>>>,
    reached_end: Arc<AtomicBool>,
}

impl Recorder {
    fn record(&self, ctx: &mut OpContext<'_>) {
        collect(ctx.out, &mut self.lines.lock());
    }
}

impl Operator for Recorder {
    fn process(&mut self, input: usize, batch: Batch, ctx: &mut OpContext<'_>) -> Result<(), TaskError> {
        let result = self.inner.process(input, batch, ctx);
        self.record(ctx);
        result
    }

    fn on_watermark(&mut self, ctx: &mut OpContext<'_>) -> Result<(), TaskError> {
        let result = self.inner.on_watermark(ctx);
        self.record(ctx);
        result
    }

    fn finish(&mut self, ctx: &mut OpContext<'_>) -> Result<(), TaskError> {
        let result = self.inner.finish(ctx);
        self.record(ctx);
        self.reached_end.store(true, Ordering::SeqCst);
        result
    }

    fn snapshot(&mut self, checkpoint: CheckpointId, chunks: &mut ChunkWriter) -> Result<OperatorSnapshot, TaskError> {
        // The feeder's closing barrier: everything before it was processed.
        self.reached_end.store(true, Ordering::SeqCst);
        self.inner.snapshot(checkpoint, chunks)
    }
}

/// Runs golden-test `input` through `copies` copies of operator `uid` of `spec`, sharing `cores` run slots, and
/// returns each copy's output lines. Input without an end command is followed by a barrier instead, and the
/// tasks are stopped once every copy has processed it, so that nothing fires that the case does not ask for.
/// Processing-time commands are refused: a task's processing time is its clock's.
pub fn run_lines_in_tasks(
    spec: &str,
    uid: &str,
    input: &str,
    copies: usize,
    cores: usize,
) -> Result<Vec<Vec<Value>>, String> {
    let commands = commands(input)?;
    if commands.iter().any(|(_, c)| matches!(c, Command::ProcessingTime(_))) {
        return Err("processing-time commands need a harness".into());
    }
    if commands.iter().any(|(_, c)| matches!(c, Command::Record { input, .. } if *input != 0)) {
        return Err("records on a second input need a harness".into());
    }
    let ends = commands.iter().any(|(_, c)| matches!(c, Command::End));
    let governor = CpuGovernor::new(cores);
    let cancel = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    let mut copies_running = Vec::new();
    for copy in 0..copies {
        let (sender, receiver) = channel(1, 0);
        senders.push(sender);
        let lines = Arc::new(Mutex::new(Vec::new()));
        let reached_end = Arc::new(AtomicBool::new(false));
        let recorder = Recorder {
            inner: operator_for(spec, uid)?,
            lines: Arc::clone(&lines),
            reached_end: Arc::clone(&reached_end),
        };
        let metrics = Arc::new(OperatorMetrics::new(uid, 1));
        let mut chain = Chain::new(vec![Link::new(Box::new(recorder), metrics, Vec::new())], Vec::new(), 0, {
            Arc::clone(&cancel)
        });
        let (control, controls) = crossbeam_channel::unbounded::<Control>();
        let (governor, cancel) = (Arc::clone(&governor), Arc::clone(&cancel));
        let name = format!("{uid}-{copy}");
        let thread = std::thread::spawn(move || {
            govern::bind(governor, "golden");
            let mut gate = Gate::new(vec![receiver], true);
            let checkpoints = TaskCheckpoints {
                index: copy,
                name,
                acks: None,
                restored: None,
                savepoints: None,
                commits: Default::default(),
            };
            let result = run_task(&mut gate, &mut chain, &ManualClock::new(0), &cancel, &controls, &checkpoints);
            govern::leave();
            result
        });
        copies_running.push((thread, control, lines, reached_end));
    }
    // The senders outlive the feeder (a copy whose input was not ended must not see its channel close), and a
    // stuck run is reported rather than waited for: threads stuck waiting for a run slot are left behind.
    let senders = Arc::new(senders);
    let feeder = {
        let (governor, cancel, senders) = (Arc::clone(&governor), Arc::clone(&cancel), Arc::clone(&senders));
        std::thread::spawn(move || feed(&commands, &senders, ends, governor, &cancel))
    };
    let started = Instant::now();
    let settled = |(thread, _, _, reached): &(std::thread::JoinHandle<_>, _, _, Arc<AtomicBool>)| {
        reached.load(Ordering::SeqCst) || thread.is_finished()
    };
    while !feeder.is_finished() || !copies_running.iter().all(settled) {
        if started.elapsed() > Duration::from_secs(60) {
            cancel.store(true, Ordering::SeqCst);
            return Err("the tasks made no progress for 60 s: stuck".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let fed = feeder.join().map_err(|_| "the feeder panicked".to_string())?;
    cancel.store(true, Ordering::SeqCst);
    let mut outputs = Vec::new();
    for (thread, control, lines, _) in copies_running {
        let _ = control.send(Control::Stop);
        let ran = thread.join().map_err(|_| "a task panicked".to_string())?;
        ran.map_err(|e| e.to_string())?;
        outputs.push(std::mem::take(&mut *lines.lock()));
    }
    fed?;
    Ok(outputs)
}

/// Sends every command to every copy, as a source task would: holding a run slot while it works.
fn feed(
    commands: &[(usize, Command)],
    senders: &[ChannelSender],
    ends: bool,
    governor: Arc<CpuGovernor>,
    cancel: &AtomicBool,
) -> Result<(), String> {
    govern::bind(governor, "golden");
    govern::enter();
    let send_all = |message: &dyn Fn() -> Message| -> Result<(), String> {
        for sender in senders {
            sender.send(message(), cancel).map_err(|e| e.to_string())?;
            govern::tick();
        }
        Ok(())
    };
    let mut result = Ok(());
    for (n, command) in commands {
        let sent = match command {
            Command::Record { batch, .. } => send_all(&|| Message::Batch(batch.clone())),
            Command::Watermark(w) => send_all(&|| Message::Watermark(*w)),
            Command::End => send_all(&|| Message::End),
            Command::ProcessingTime(_) => Ok(()),
        };
        if let Err(e) = sent {
            result = Err(format!("input line {n}: {e}"));
            break;
        }
    }
    if result.is_ok() && !ends {
        result = send_all(&|| Message::Barrier(Barrier::checkpoint(1)));
    }
    govern::leave();
    result
}
