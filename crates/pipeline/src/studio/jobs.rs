//! The job queue: heavy work (training, generation) runs one job at a time on a dedicated
//! thread, never on the HTTP runtime. Each job keeps every event it reported, so a page that
//! connects mid-run (a reload, a second tab) replays the history and continues live; the
//! records are saved to `jobs.json` so a restarted server shows finished and interrupted runs.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use tokio::sync::watch;

use super::error::ApiError;
use crate::cancel::CancelToken;
use crate::fsutil::atomic_write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    Train,
    Generate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Finished,
    /// Stopped by the user; a training job keeps a resumable checkpoint.
    Cancelled,
    Failed,
    /// The server stopped while the job was queued or running.
    Interrupted,
}

impl JobState {
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }
}

/// One job as stored and reported.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: u64,
    pub kind: JobKind,
    pub state: JobState,
    pub title: String,
    /// Unix seconds.
    pub created: u64,
    #[serde(default)]
    pub started: Option<u64>,
    #[serde(default)]
    pub finished: Option<u64>,
    /// What was asked, resolved (paths canonical, seed chosen).
    pub request: Json,
    #[serde(default)]
    pub result: Json,
    #[serde(default)]
    pub error: Option<String>,
    /// Training: the checkpoint folder a cancelled or interrupted run continues from.
    #[serde(default)]
    pub checkpoint: Option<PathBuf>,
    #[serde(default)]
    pub resumed_from: Option<u64>,
    /// Every event so far, in order (training events as the library reports them).
    #[serde(default)]
    pub events: Vec<Json>,
}

impl JobRecord {
    /// The record without its events (job lists).
    pub fn summary(&self) -> Json {
        let mut v = serde_json::to_value(Self {
            events: Vec::new(),
            ..self.clone()
        })
        .unwrap_or(Json::Null);
        if let Json::Object(o) = &mut v {
            o.remove("events");
            o.insert("event_count".into(), self.events.len().into());
        }
        v
    }
}

struct Entry {
    record: JobRecord,
    cancel: CancelToken,
    /// The number of events, watched by event streams.
    notify: watch::Sender<usize>,
}

impl Entry {
    fn new(record: JobRecord) -> Self {
        let (notify, _) = watch::channel(record.events.len());
        Self {
            record,
            cancel: CancelToken::new(),
            notify,
        }
    }
}

#[derive(Default)]
struct Inner {
    jobs: Vec<Entry>,
    queue: VecDeque<u64>,
    next_id: u64,
}

/// A job taken by the worker.
pub struct Taken {
    pub id: u64,
    pub kind: JobKind,
    pub request: Json,
    pub cancel: CancelToken,
}

/// All jobs, the queue and their file.
pub struct Jobs {
    inner: Mutex<Inner>,
    wake: Condvar,
    file: PathBuf,
    save_lock: Mutex<()>,
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Jobs {
    /// The jobs of `file` (none when it does not exist); those queued or running when the
    /// server stopped become interrupted.
    pub fn load(file: &Path) -> Self {
        let mut records: Vec<JobRecord> = std::fs::read(file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        for r in &mut records {
            if !r.state.is_terminal() {
                r.state = JobState::Interrupted;
                r.error = Some("the studio stopped while this job was queued or running".into());
            }
        }
        let next_id = records.iter().map(|r| r.id).max().unwrap_or(0) + 1;
        let jobs = Self {
            inner: Mutex::new(Inner {
                jobs: records.into_iter().map(Entry::new).collect(),
                queue: VecDeque::new(),
                next_id,
            }),
            wake: Condvar::new(),
            file: file.to_path_buf(),
            save_lock: Mutex::new(()),
        };
        jobs.save();
        jobs
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes every record to the jobs file (atomically; a failure is reported on stderr,
    /// the jobs stay in memory).
    fn save(&self) {
        let _one_writer = self.save_lock.lock().unwrap_or_else(|p| p.into_inner());
        let bytes = {
            let inner = self.lock();
            let records: Vec<&JobRecord> = inner.jobs.iter().map(|e| &e.record).collect();
            serde_json::to_vec(&records)
        };
        match bytes {
            Ok(b) => {
                if let Err(e) = atomic_write(&self.file, &b) {
                    eprintln!("warning: could not save {}: {e}", self.file.display());
                }
            }
            Err(e) => eprintln!("warning: could not serialise the jobs: {e}"),
        }
    }

    /// Queues a job; `events` starts its history (a resumed run carries its past epochs).
    pub fn submit(
        &self,
        kind: JobKind,
        title: String,
        request: Json,
        events: Vec<Json>,
        resumed_from: Option<u64>,
    ) -> u64 {
        let id = {
            let mut inner = self.lock();
            let id = inner.next_id;
            inner.next_id += 1;
            inner.jobs.push(Entry::new(JobRecord {
                id,
                kind,
                state: JobState::Queued,
                title,
                created: now(),
                started: None,
                finished: None,
                request,
                result: Json::Null,
                error: None,
                checkpoint: None,
                resumed_from,
                events,
            }));
            inner.queue.push_back(id);
            id
        };
        self.push_event(
            id,
            serde_json::json!({"event": "job", "state": JobState::Queued}),
        );
        self.wake.notify_all();
        id
    }

    /// Every job without events, newest first, with its place in the queue.
    pub fn list(&self) -> Vec<Json> {
        let inner = self.lock();
        let mut out: Vec<Json> = inner
            .jobs
            .iter()
            .rev()
            .map(|e| {
                let mut v = e.record.summary();
                if let Some(pos) = inner.queue.iter().position(|&q| q == e.record.id) {
                    v["queue_position"] = (pos + 1).into();
                }
                v
            })
            .collect();
        out.shrink_to_fit();
        out
    }

    pub fn get(&self, id: u64) -> Option<JobRecord> {
        self.lock()
            .jobs
            .iter()
            .find(|e| e.record.id == id)
            .map(|e| e.record.clone())
    }

    /// Jobs matching `pred`.
    pub fn find(&self, pred: impl Fn(&JobRecord) -> bool) -> Vec<JobRecord> {
        self.lock()
            .jobs
            .iter()
            .filter(|e| pred(&e.record))
            .map(|e| e.record.clone())
            .collect()
    }

    /// Event `index` of a job (`None` inside when there is none yet) and whether the job
    /// has ended; `None` for an unknown job.
    pub fn event_at(&self, id: u64, index: usize) -> Option<(Option<Json>, bool)> {
        let inner = self.lock();
        let e = inner.jobs.iter().find(|e| e.record.id == id)?;
        Some((
            e.record.events.get(index).cloned(),
            e.record.state.is_terminal(),
        ))
    }

    pub fn subscribe(&self, id: u64) -> Option<watch::Receiver<usize>> {
        let inner = self.lock();
        inner
            .jobs
            .iter()
            .find(|e| e.record.id == id)
            .map(|e| e.notify.subscribe())
    }

    /// Appends an event to a job's history and wakes its streams.
    pub fn push_event(&self, id: u64, event: Json) {
        self.update(id, |r| r.events.push(event));
    }

    /// Changes a job's record, wakes its streams and saves.
    fn update(&self, id: u64, change: impl FnOnce(&mut JobRecord)) {
        {
            let mut inner = self.lock();
            if let Some(e) = inner.jobs.iter_mut().find(|e| e.record.id == id) {
                change(&mut e.record);
                e.notify.send_replace(e.record.events.len());
            }
        }
        self.save();
    }

    /// Asks a job to stop: a queued one is dropped from the queue, a running one stops at
    /// its next step (training keeps its checkpoint).
    pub fn cancel(&self, id: u64) -> Result<JobState, ApiError> {
        let state = {
            let mut inner = self.lock();
            let Some(pos) = inner.jobs.iter().position(|e| e.record.id == id) else {
                return Err(ApiError::not_found(format!("no job {id}")));
            };
            let state = inner.jobs[pos].record.state;
            match state {
                JobState::Queued => inner.queue.retain(|&q| q != id),
                JobState::Running => inner.jobs[pos].cancel.cancel(),
                s => {
                    return Err(ApiError::conflict(format!(
                        "job {id} has already ended ({})",
                        serde_json::to_value(s)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default()
                    )));
                }
            }
            state
        };
        if state == JobState::Queued {
            self.finish(id, JobState::Cancelled, Json::Null, None, None);
        }
        Ok(state)
    }

    /// Blocks until a job is queued, marks it running and hands it over.
    pub fn take_next(&self) -> Taken {
        let mut inner = self.lock();
        loop {
            if let Some(id) = inner.queue.pop_front()
                && let Some(e) = inner.jobs.iter_mut().find(|e| e.record.id == id)
            {
                e.record.state = JobState::Running;
                e.record.started = Some(now());
                let taken = Taken {
                    id,
                    kind: e.record.kind,
                    request: e.record.request.clone(),
                    cancel: e.cancel.clone(),
                };
                drop(inner);
                self.push_event(
                    id,
                    serde_json::json!({"event": "job", "state": JobState::Running}),
                );
                return taken;
            }
            inner = self.wake.wait(inner).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Records how a job ended.
    pub fn finish(
        &self,
        id: u64,
        state: JobState,
        result: Json,
        error: Option<String>,
        checkpoint: Option<PathBuf>,
    ) {
        self.update(id, |r| {
            r.state = state;
            r.finished = Some(now());
            r.result = result;
            r.error = error.clone();
            r.checkpoint = checkpoint;
            r.events
                .push(serde_json::json!({"event": "job", "state": state, "error": error}));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_survive_a_restart_and_running_ones_become_interrupted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("jobs.json");
        let jobs = Jobs::load(&file);
        let a = jobs.submit(JobKind::Generate, "a".into(), Json::Null, Vec::new(), None);
        let b = jobs.submit(JobKind::Generate, "b".into(), Json::Null, Vec::new(), None);
        let taken = jobs.take_next();
        assert_eq!(taken.id, a);
        jobs.finish(a, JobState::Finished, Json::Null, None, None);
        assert_eq!(
            jobs.cancel(a),
            Err(ApiError::conflict("job 1 has already ended (finished)"))
        );
        let _ = jobs.take_next();
        let again = Jobs::load(&file);
        assert_eq!(again.get(a).map(|r| r.state), Some(JobState::Finished));
        assert_eq!(again.get(b).map(|r| r.state), Some(JobState::Interrupted));
        let c = again.submit(JobKind::Train, "c".into(), Json::Null, Vec::new(), None);
        assert!(c > b);
        assert_eq!(again.cancel(c), Ok(JobState::Queued));
        assert_eq!(again.get(c).map(|r| r.state), Some(JobState::Cancelled));
    }
}
