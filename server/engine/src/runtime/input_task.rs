//! A task fed by channels: its input gate reads the channels in order per channel, aligns checkpoint barriers,
//! combines watermarks, and hands each message to the chain.

use super::chain::{Chain, TaskCheckpoints};
use super::channel::{InputChannel, Message};
use super::{govern, until};
use crate::checkpoint::{Aligned, BarrierAligner, TaskSnapshot};
use crate::control::{Barrier, Control};
use crate::error::TaskError;
use crate::time::{Clock, InputWatermarks, MAX_WATERMARK, StatusChange};
use crossbeam_channel::{Receiver, Select};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The input side of a task.
pub struct Gate {
    channels: Vec<InputChannel>,
    open: Vec<bool>,
    watermarks: InputWatermarks,
    aligner: BarrierAligner,
}

/// What the gate received.
enum Received {
    /// A message of an input channel.
    Message(usize, Message),
    /// A control message.
    Control(Control),
    /// Nothing before the timeout.
    Nothing,
}

impl Gate {
    /// A gate over `channels`; `align` holds back inputs that delivered a barrier until all have (exactly-once).
    pub fn new(channels: Vec<InputChannel>, align: bool) -> Gate {
        let count = channels.len();
        Gate {
            channels,
            open: vec![true; count],
            watermarks: InputWatermarks::new(count),
            aligner: BarrierAligner::new(count, align),
        }
    }

    /// The next message of an open input that is not held back, or a control message, waiting up to `timeout`
    /// (none: until one comes).
    fn recv(
        &mut self,
        timeout: Option<Duration>,
        cancel: &AtomicBool,
        control: &Receiver<Control>,
    ) -> Result<Received, TaskError> {
        let open: Vec<usize> =
            (0..self.channels.len()).filter(|&i| self.open[i] && !self.aligner.is_blocked(i)).collect();
        let disconnected = || {
            if cancel.load(Ordering::Relaxed) {
                TaskError::internal("cancelled")
            } else {
                TaskError::internal("an upstream task stopped without finishing")
            }
        };
        let mut select = Select::new();
        for &i in &open {
            select.recv(&self.channels[i].rx);
        }
        let control_index = select.recv(control);
        // Selecting reserves the chosen message in its channel, and its senders spin until it is read: so it is
        // read at once, never held while this task waits for a run slot (which a spinning sender may hold). A task
        // with input waiting keeps its run slot; one that must wait gives it back meanwhile and reads what woke it
        // before it asks for a slot again.
        let received = match select.try_select() {
            Ok(operation) => Some(self.complete(operation, control_index, &open, control)),
            Err(_) => govern::blocking(|| {
                let operation = match timeout {
                    Some(timeout) => select.select_timeout(timeout).ok()?,
                    None => select.select(),
                };
                Some(self.complete(operation, control_index, &open, control))
            }),
        };
        match received {
            None | Some(Ok(None)) => Ok(Received::Nothing),
            Some(Ok(Some(received))) => Ok(received),
            Some(Err(())) => Err(disconnected()),
        }
    }

    /// Reads the message a select chose: a control message, a channel's message, or (`Err`) the channel's end.
    fn complete(
        &self,
        operation: crossbeam_channel::SelectedOperation<'_>,
        control_index: usize,
        open: &[usize],
        control: &Receiver<Control>,
    ) -> Result<Option<Received>, ()> {
        if operation.index() == control_index {
            return Ok(operation.recv(control).ok().map(Received::Control));
        }
        let channel = open[operation.index()];
        match operation.recv(&self.channels[channel].rx) {
            Ok(message) => Ok(Some(Received::Message(channel, message))),
            Err(_) => Err(()),
        }
    }
}

/// Snapshots a task with inputs once a checkpoint's barriers are aligned, and passes the barrier on.
fn aligned(barrier: Barrier, gate: &Gate, chain: &mut Chain, checkpoints: &TaskCheckpoints) -> Result<(), TaskError> {
    let (input_watermarks, watermark) = gate.watermarks.snapshot();
    checkpoints.take(chain, barrier, TaskSnapshot { input_watermarks, watermark, ..Default::default() })?;
    chain.barrier(barrier)
}

/// Runs a task fed by channels until every input ends or the job is cancelled. It sleeps until a message, a
/// processing-time timer or a control message wakes it.
pub fn run_task(
    gate: &mut Gate,
    chain: &mut Chain,
    clock: &dyn Clock,
    cancel: &AtomicBool,
    control: &Receiver<Control>,
    checkpoints: &TaskCheckpoints,
) -> Result<(), TaskError> {
    if let Some(restored) = &checkpoints.restored {
        gate.watermarks.restore(&restored.input_watermarks, restored.watermark);
        chain.restore_watermark(restored.watermark);
    }
    govern::enter();
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Ok(());
        }
        govern::tick();
        let now = clock.now();
        let message = gate.recv(until(chain.next_processing_timer(), now), cancel, control)?;
        // The wait may have been long: operators see the time the message arrived.
        let now = clock.now();
        match message {
            Received::Message(channel, Message::Batch(batch)) => {
                let input = gate.channels[channel].input;
                chain.push(0, input, batch, now)?;
            }
            Received::Message(channel, Message::Barrier(barrier)) => {
                let (result, overtaken) = gate.aligner.on_barrier(channel, barrier);
                if let Some(old) = overtaken {
                    chain.checkpoint_aborted(old);
                }
                if let Aligned::Complete(barrier) = result {
                    aligned(barrier, gate, chain, checkpoints)?;
                }
            }
            Received::Message(channel, Message::Watermark(w)) => {
                if let Some(advanced) = gate.watermarks.on_watermark(channel, w) {
                    chain.watermark(advanced, now)?;
                }
            }
            Received::Message(channel, Message::Idle(idle)) => {
                let (advanced, change) = gate.watermarks.on_status(channel, idle);
                if let Some(w) = advanced {
                    chain.watermark(w, now)?;
                }
                if let Some(change) = change {
                    chain.status(change == StatusChange::BecameIdle)?;
                }
            }
            Received::Message(channel, Message::End) => {
                gate.open[channel] = false;
                if let Some(w) = gate.watermarks.on_end(channel) {
                    chain.watermark(w, now)?;
                }
                if let Aligned::Complete(barrier) = gate.aligner.on_end(channel) {
                    aligned(barrier, gate, chain, checkpoints)?;
                }
                if gate.watermarks.all_ended() {
                    if gate.watermarks.current() < MAX_WATERMARK {
                        chain.watermark(MAX_WATERMARK, now)?;
                    }
                    chain.finish(now)?;
                    let snapshot =
                        TaskSnapshot { task: checkpoints.name.clone(), finished: true, ..Default::default() };
                    checkpoints.finished(snapshot);
                    return Ok(());
                }
            }
            Received::Control(Control::CheckpointComplete(id)) => checkpoints.complete(chain, id)?,
            Received::Control(Control::CheckpointAborted(id)) => {
                gate.aligner.abort(id);
                chain.checkpoint_aborted(id);
            }
            // Stopping is read from the cancel flag; checkpoints start at sources only.
            Received::Control(Control::Stop | Control::Checkpoint(_) | Control::Suspend { .. } | Control::Resume)
            | Received::Nothing => {}
        }
        let now = clock.now();
        if chain.next_processing_timer().is_some_and(|t| t <= now) {
            chain.processing_time(now)?;
        }
    }
}
