//! A few threads for the blocking work of many small files, sharing one
//! queue.
//!
//! The runtime's blocking pool grows a thread for every task that finds none
//! idle, and wakes a sleeping thread for each task after: with a hundred
//! files in flight, every file costs several thread wake-ups and context
//! switches, which cost more than a small file's work. These threads take
//! the next job without sleeping while work waits, so a busy queue costs no
//! wake-up at all. There are a few, not one, so that a slow disk still sees
//! several requests at once.
//!
//! [`ShortOps`] runs short operations one by one: resolving a path, opening
//! and reading a small file, deleting one. The finisher takes jobs in
//! batches. Long operations (reading or writing a large file, hashing) keep
//! threads of their own: they would hold up the queue.
//!
//! The threads serve every peer, so each job is queued under its
//! [`Requester`], and the threads take the requesters in turn, one job of
//! each: a peer that queues thousands of jobs (a deep tree, whose every new
//! directory costs an fsync) delays another peer's job by at most one job
//! per thread, not by its whole backlog.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};

use tokio::sync::oneshot;

use crate::protocol::{ErrorKind, RealizeError};

/// Threads sharing a queue of jobs `J`, and the requester whose jobs this
/// handle queues; they stop, once the queue is empty, when the last handle
/// is dropped.
pub(super) struct Workers<J> {
    shared: Arc<Shared<J>>,
    _closer: Arc<Closer<J>>,
    requester: Requester,
}

impl<J> Clone for Workers<J> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            _closer: self._closer.clone(),
            requester: self.requester.clone(),
        }
    }
}

impl<J> std::fmt::Debug for Workers<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers").finish_non_exhaustive()
    }
}

/// Closes the queue when dropped, with the last [`Workers`] handle.
struct Closer<J>(Arc<Shared<J>>);

struct Shared<J> {
    state: Mutex<State<J>>,
    work: Condvar,
    /// The threads, joined by [`Workers::stop`].
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

struct State<J> {
    jobs: FairQueue<J>,
    /// Threads waiting for work.
    idle: usize,
    closed: bool,
}

impl<J: Send + 'static> Workers<J> {
    /// Starts `threads` threads named `name-N`; each hands `handle` up to
    /// `batch` jobs at a time, all that wait when fewer do.
    pub(super) fn start(
        name: &str,
        threads: usize,
        batch: usize,
        handle: impl Fn(Vec<J>) + Send + Sync + 'static,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                jobs: FairQueue::default(),
                idle: 0,
                closed: false,
            }),
            work: Condvar::new(),
            threads: Mutex::default(),
        });
        // Made first, so that the threads already started stop if a later
        // one cannot be.
        let closer = Arc::new(Closer(shared.clone()));
        let handle = Arc::new(handle);
        for index in 0..threads {
            let (serving, handle) = (shared.clone(), handle.clone());
            let thread = std::thread::Builder::new()
                .name(format!("{name}-{index}"))
                .spawn(move || serve(&serving, batch, &*handle))?;
            shared.threads().push(thread);
        }
        Ok(Self {
            _closer: closer,
            shared,
            requester: Requester::default(),
        })
    }

    /// A handle on the same threads queuing the jobs of `requester`.
    pub(super) fn for_requester(&self, requester: Requester) -> Self {
        Self {
            requester,
            ..self.clone()
        }
    }

    /// Queues `job` behind this handle's requester's others, waking a
    /// thread only if none is at work. Once the threads are stopped, drops
    /// `job`: whoever waits for its answer learns that it was not done.
    pub(super) fn push(&self, job: J) {
        let mut state = self.shared.lock();
        if state.closed {
            return;
        }
        state.jobs.push(self.requester.clone(), job);
        if state.idle > 0 {
            self.shared.work.notify_one();
        }
    }
}

impl<J> Workers<J> {
    /// Closes the queue (jobs pushed from now on are dropped), lets the
    /// threads handle the jobs queued, and waits until every thread has
    /// stopped. Blocking; not to be called from one of these threads.
    pub(super) fn stop(&self) {
        self.shared.close();
        let threads = std::mem::take(&mut *self.shared.threads());
        for thread in threads {
            if thread.join().is_err() {
                tracing::error!("a worker thread panicked");
            }
        }
    }
}

impl<J> Shared<J> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State<J>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn threads(&self) -> std::sync::MutexGuard<'_, Vec<std::thread::JoinHandle<()>>> {
        self.threads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells the threads to stop once the queue is empty.
    fn close(&self) {
        self.lock().closed = true;
        self.work.notify_all();
    }
}

impl<J> Drop for Closer<J> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// One thread: handles queued jobs until the queue is closed and empty.
fn serve<J>(shared: &Shared<J>, batch: usize, handle: &dyn Fn(Vec<J>)) {
    let mut state = shared.lock();
    loop {
        if !state.jobs.is_empty() {
            let jobs = state.jobs.take(batch);
            drop(state);
            handle(jobs);
            state = shared.lock();
        } else if state.closed {
            return;
        } else {
            state.idle += 1;
            state = shared.work.wait(state).unwrap_or_else(|p| p.into_inner());
            state.idle -= 1;
        }
    }
}

/// Whose work a job is: a peer, or the process itself (the default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(super) struct Requester(Arc<str>);

impl Requester {
    /// The requester named `name`.
    pub(super) fn new(name: &str) -> Self {
        Self(name.into())
    }
}

/// Jobs queued per requester, taken from the requesters in turn.
struct FairQueue<J> {
    queues: HashMap<Requester, VecDeque<J>>,
    /// The requesters with jobs waiting, the next to be served first.
    turns: VecDeque<Requester>,
}

impl<J> Default for FairQueue<J> {
    fn default() -> Self {
        Self {
            queues: HashMap::new(),
            turns: VecDeque::new(),
        }
    }
}

impl<J> FairQueue<J> {
    fn is_empty(&self) -> bool {
        self.turns.is_empty()
    }

    /// Queues `job` behind `requester`'s others; a requester with no job
    /// waiting takes its turn after every requester that has.
    fn push(&mut self, requester: Requester, job: J) {
        let queue = self.queues.entry(requester.clone()).or_default();
        if queue.is_empty() {
            self.turns.push_back(requester);
        }
        queue.push_back(job);
    }

    /// Takes up to `most` jobs, one per requester's turn; each requester's
    /// jobs come in the order they were queued.
    fn take(&mut self, most: usize) -> Vec<J> {
        let mut taken = Vec::with_capacity(most.min(self.turns.len().max(1)));
        while taken.len() < most {
            let Some(requester) = self.turns.pop_front() else {
                break;
            };
            let queue = self.queues.get_mut(&requester).expect("a turn has jobs");
            taken.extend(queue.pop_front());
            if queue.is_empty() {
                self.queues.remove(&requester);
            } else {
                self.turns.push_back(requester);
            }
        }
        taken
    }
}

/// A short blocking operation, answering through its own channel.
type Op = Box<dyn FnOnce() + Send>;

/// Threads for short blocking operations (see the module's documentation).
#[derive(Debug, Clone)]
pub(super) struct ShortOps {
    workers: Workers<Op>,
}

/// Threads of a [`ShortOps`].
const SHORT_OPS_THREADS: usize = 4;

impl ShortOps {
    /// Starts the threads.
    pub(super) fn start() -> std::io::Result<Self> {
        let workers = Workers::start("realize-io", SHORT_OPS_THREADS, 1, |ops: Vec<Op>| {
            ops.into_iter().for_each(|op| op())
        })?;
        Ok(Self { workers })
    }

    /// A handle on the same threads queuing the operations of `requester`.
    pub(super) fn for_requester(&self, requester: Requester) -> Self {
        let workers = self.workers.for_requester(requester);
        Self { workers }
    }

    /// Runs the operations queued, then stops the threads (see
    /// [`Workers::stop`]). Blocking.
    pub(super) fn stop(&self) {
        self.workers.stop();
    }

    /// Runs `op` on one of the threads and returns its result; an `op`
    /// whose caller stopped waiting before its turn is not run.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        op: impl FnOnce() -> Result<T, RealizeError> + Send + 'static,
    ) -> Result<T, RealizeError> {
        let (reply, outcome) = oneshot::channel();
        let op = Box::new(move || {
            if !reply.is_closed() {
                let _ = reply.send(op());
            }
        });
        self.workers.push(op);
        outcome
            .await
            .map_err(|_| RealizeError::new(ErrorKind::Io, "a file-system thread stopped"))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[tokio::test]
    async fn short_ops_run_and_return_their_results() {
        let ops = ShortOps::start().unwrap();
        let results = futures::future::join_all((0..100u32).map(|i| ops.run(move || Ok(i * 2))));
        let results: Vec<u32> = results.await.into_iter().map(Result::unwrap).collect();
        assert_eq!(results, (0..100).map(|i| i * 2).collect::<Vec<_>>());
        let failed = ops
            .run(|| Err::<(), _>(RealizeError::new(ErrorKind::Io, "disk on fire")))
            .await;
        assert_eq!(failed.unwrap_err().message, "disk on fire");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_op_whose_caller_stopped_waiting_is_not_run() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Barrier};
        let ops = ShortOps::start().unwrap();
        let threads = SHORT_OPS_THREADS;
        let started = Arc::new(Barrier::new(threads + 1));
        let release = Arc::new(Barrier::new(threads + 1));
        // An op on a spawned task that holds its thread between the barriers.
        let hold = || {
            let (ops, started, release) = (ops.clone(), started.clone(), release.clone());
            tokio::spawn(async move {
                ops.run(move || {
                    started.wait();
                    release.wait();
                    Ok(())
                })
                .await
            })
        };
        let held: Vec<_> = (0..threads).map(|_| hold()).collect();
        tokio::task::block_in_place(|| started.wait()); // every thread is busy
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        let queued = ops.run(move || {
            flag.store(true, Ordering::Relaxed);
            Ok(())
        });
        // Polled once, so queued; then dropped: its caller stops waiting.
        let _ = tokio::time::timeout(std::time::Duration::ZERO, queued).await;
        // The abandoned op is first in the queue: once one op per thread
        // behind it runs, its thread has passed it.
        let after: Vec<_> = (0..threads).map(|_| hold()).collect();
        tokio::task::block_in_place(|| release.wait());
        tokio::task::block_in_place(|| started.wait());
        tokio::task::block_in_place(|| release.wait());
        for task in held.into_iter().chain(after) {
            task.await.unwrap().unwrap();
        }
        assert!(!ran.load(Ordering::Relaxed));
    }

    #[test]
    fn jobs_queued_while_a_thread_works_come_in_one_batch() {
        let (done, batches) = mpsc::channel();
        let (started, holding) = mpsc::channel();
        let (release, gate) = mpsc::channel::<()>();
        let (started, gate) = (Mutex::new(started), Mutex::new(gate));
        let workers = Workers::start("test", 1, 10, move |jobs: Vec<u32>| {
            if jobs == [0] {
                started.lock().unwrap().send(()).unwrap();
                gate.lock().unwrap().recv().unwrap(); // Hold the thread.
            }
            done.send(jobs).unwrap();
        })
        .unwrap();
        let push = |job| workers.push(job);
        push(0);
        holding.recv().unwrap();
        // Jobs pushed while the thread is held wait, then come together,
        // at most `batch` at a time.
        (1..=15).for_each(push);
        release.send(()).unwrap();
        let received: Vec<Vec<u32>> = (0..3).map(|_| batches.recv().unwrap()).collect();
        assert_eq!(
            received,
            [vec![0], (1..=10).collect(), (11..=15).collect::<Vec<_>>()]
        );
    }

    #[test]
    fn a_requester_with_one_job_waits_behind_one_job_of_a_backlog_not_the_backlog() {
        let (done, handled) = mpsc::channel();
        let (started, holding) = mpsc::channel();
        let (release, gate) = mpsc::channel::<()>();
        let (started, gate) = (Mutex::new(started), Mutex::new(gate));
        let workers = Workers::start("test", 1, 1, move |jobs: Vec<(&str, u32)>| {
            if jobs == [("busy", 0)] {
                started.lock().unwrap().send(()).unwrap();
                gate.lock().unwrap().recv().unwrap(); // Hold the thread.
            }
            done.send(jobs[0]).unwrap();
        })
        .unwrap();
        let (busy, other) = (Requester::new("busy"), Requester::new("other"));
        let (busy, other) = (workers.for_requester(busy), workers.for_requester(other));
        busy.push(("busy", 0));
        holding.recv().unwrap();
        // One requester queues a long backlog, then another one job.
        for job in 1..=100 {
            busy.push(("busy", job));
        }
        other.push(("other", 0));
        release.send(()).unwrap();
        drop((workers, busy, other));
        let order: Vec<_> = handled.iter().collect();
        let other_at = order.iter().position(|job| job.0 == "other").unwrap();
        // Behind the job at work and at most one more of the backlog.
        assert!(
            other_at <= 2,
            "handled after {other_at} jobs of the backlog"
        );
        let backlog: Vec<u32> = order
            .iter()
            .filter(|j| j.0 == "busy")
            .map(|j| j.1)
            .collect();
        assert_eq!(
            backlog,
            (0..=100).collect::<Vec<_>>(),
            "each requester in order"
        );
    }

    #[test]
    fn threads_finish_the_queue_then_stop_with_the_last_handle() {
        let (done, handled) = mpsc::channel();
        let workers = Workers::start("test", 2, 1, move |jobs: Vec<u32>| {
            std::thread::sleep(std::time::Duration::from_millis(5));
            done.send(jobs).unwrap();
        })
        .unwrap();
        (0..20).for_each(|job| workers.push(job));
        drop(workers);
        let mut seen: Vec<u32> = handled.iter().flatten().collect();
        seen.sort_unstable();
        // The iteration above ends only when both threads (which hold the
        // senders) have stopped.
        assert_eq!(seen, (0..20).collect::<Vec<_>>());
    }

    #[test]
    fn stop_handles_the_queue_joins_the_threads_and_drops_later_jobs() {
        let (done, handled) = mpsc::channel();
        let workers = Workers::start("test", 2, 1, move |jobs: Vec<u32>| {
            std::thread::sleep(std::time::Duration::from_millis(5));
            done.send(jobs).unwrap();
        })
        .unwrap();
        (0..20).for_each(|job| workers.push(job));
        workers.stop();
        // Every queued job was handled before `stop` returned.
        let mut seen: Vec<u32> = handled.try_iter().flatten().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..20).collect::<Vec<_>>());
        workers.push(20);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(handled.try_iter().next().is_none(), "a job after stop");
    }
}
