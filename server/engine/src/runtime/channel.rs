//! Bounded channels between tasks. A full channel blocks the sender: that is backpressure.

use crate::control::Control;
use crate::error::TaskError;
use crossbeam_channel::{Receiver, SendTimeoutError, Sender};
use eddy_codec::Batch;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What travels between tasks: data and control elements in one ordered stream.
#[derive(Debug)]
pub enum Message {
    /// Records.
    Batch(Batch),
    /// No later record on this channel has an earlier timestamp.
    Watermark(i64),
    /// The sender became idle (true) or active again (false).
    Idle(bool),
    /// Everything before it belongs to checkpoint `id`; everything after, to the next.
    Barrier(crate::control::Barrier),
    /// The sender has finished; nothing follows.
    End,
}

/// A task's control receiver and the job's sender for it.
pub fn control() -> (Sender<Control>, Receiver<Control>) {
    crossbeam_channel::unbounded()
}

/// How often a blocked sender checks whether the job was cancelled.
const CANCEL_CHECK: Duration = Duration::from_millis(50);

/// The sending end of a channel.
#[derive(Debug, Clone)]
pub struct ChannelSender {
    tx: Sender<Message>,
}

/// The receiving end of a channel, with the input of the receiving operator it feeds.
#[derive(Debug)]
pub struct InputChannel {
    /// The receiver.
    pub rx: Receiver<Message>,
    /// Which input of the receiving operator (0, or 1 for a connect's second input).
    pub input: usize,
}

/// A bounded channel holding up to `capacity` messages.
pub fn channel(capacity: usize, input: usize) -> (ChannelSender, InputChannel) {
    let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
    (ChannelSender { tx }, InputChannel { rx, input })
}

impl ChannelSender {
    /// Sends, waiting while the channel is full; returns how long it waited. Fails when the job is cancelled or
    /// the receiver is gone.
    pub fn send(&self, message: Message, cancel: &AtomicBool) -> Result<Duration, TaskError> {
        let started = std::time::Instant::now();
        let mut message = match self.tx.try_send(message) {
            Ok(()) => return Ok(Duration::ZERO),
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => {
                return Err(TaskError::internal("a downstream task stopped"));
            }
            Err(crossbeam_channel::TrySendError::Full(message)) => message,
        };
        // Backpressure: wait without holding the tenant's run slot, so the task downstream can take it and drain.
        super::govern::blocking(|| {
            loop {
                match self.tx.send_timeout(message, CANCEL_CHECK) {
                    Ok(()) => return Ok(started.elapsed()),
                    Err(SendTimeoutError::Timeout(m)) => {
                        if cancel.load(Ordering::Relaxed) {
                            return Err(TaskError::internal("cancelled"));
                        }
                        message = m;
                    }
                    Err(SendTimeoutError::Disconnected(_)) => {
                        return Err(TaskError::internal("a downstream task stopped"));
                    }
                }
            }
        })
    }
}
