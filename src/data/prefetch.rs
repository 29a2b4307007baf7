//! The prefetch thread: runs a `Producer` ahead of the consumer through a bounded queue.
use super::sampler::LoaderState;
use super::source::{BatchSource, Producer};
use super::Batch;
use anyhow::{anyhow, Result};
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;
use std::time::Instant;

type Item = (Result<Batch>, LoaderState);

/// A `BatchSource` fed by a background thread holding up to `depth` ready batches.
pub struct Prefetcher {
    rx: Option<Receiver<Item>>,
    thread: Option<JoinHandle<()>>,
    state: LoaderState,
    wait_ms: f64,
    failed: bool,
    /// The batch `wait_first` received (and the position after it), for `next_batch`.
    first: Option<(Batch, LoaderState)>,
}

impl Prefetcher {
    pub fn spawn(mut producer: Box<dyn Producer>, depth: usize) -> Result<Prefetcher> {
        let state = producer.state();
        let (tx, rx) = sync_channel::<Item>(depth.max(1));
        let thread = std::thread::Builder::new()
            .name("zerotrain-data".into())
            .spawn(move || loop {
                let b = producer.produce();
                let stop = b.is_err();
                // A send error means the consumer is gone: stop quietly.
                if tx.send((b, producer.state())).is_err() || stop {
                    return;
                }
            })
            .map_err(|e| anyhow!("cannot start the data prefetch thread: {e}"))?;
        Ok(Prefetcher {
            rx: Some(rx),
            thread: Some(thread),
            state,
            wait_ms: 0.0,
            failed: false,
            first: None,
        })
    }

    /// Waits for the first batch and keeps it for `next_batch`, so whatever it meets (a
    /// shard's checksum, a bad token) is an error of opening the source. Not counted in
    /// `wait_ms`.
    pub fn wait_first(&mut self) -> Result<()> {
        let item = self.receive()?;
        self.first = Some(item);
        Ok(())
    }

    /// The next batch from the thread; an error (the producer's, or the thread gone)
    /// leaves the source failed.
    fn receive(&mut self) -> Result<(Batch, LoaderState)> {
        if self.failed {
            return Err(anyhow!("the data loader stopped after an earlier error"));
        }
        match self.rx.as_ref().map(|rx| rx.recv()) {
            Some(Ok((Ok(b), st))) => Ok((b, st)),
            Some(Ok((Err(e), _))) => {
                self.failed = true;
                Err(e)
            }
            _ => {
                self.failed = true;
                Err(anyhow!("the data prefetch thread ended unexpectedly"))
            }
        }
    }
}

impl BatchSource for Prefetcher {
    fn next_batch(&mut self) -> Result<Batch> {
        let (b, st) = match self.first.take() {
            Some(item) => item,
            None => {
                let t = Instant::now();
                let got = self.receive();
                self.wait_ms += t.elapsed().as_secs_f64() * 1e3;
                got?
            }
        };
        self.state = st;
        Ok(b)
    }
    fn state(&self) -> LoaderState {
        self.state
    }
    fn wait_ms(&self) -> f64 {
        self.wait_ms
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        // Dropping the receiver makes the thread's next send fail, so it ends.
        drop(self.rx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
