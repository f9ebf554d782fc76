//! What the job thread does: training and generation through the library, their events
//! recorded in the job.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use super::Studio;
use super::jobs::{JobKind, JobState, Taken};
use crate::cancel::CancelToken;
use crate::generate::{
    BATCH, GenerateSettings, Generator, SoundFile, WavFormat, duration_samples, sound_seeds,
    write_sound,
};
use crate::modelfile::ModelFile;
use crate::train::{ConfigOverrides, Event, TrainOptions, TrainOutcome, train};

/// A training job, resolved: canonical paths inside the studio's folders.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainJob {
    pub data: PathBuf,
    pub output: PathBuf,
    pub overrides: ConfigOverrides,
    pub seed: Option<u64>,
    #[serde(default)]
    pub preview_every: Option<usize>,
    /// The checkpoint folder a resumed run continues from.
    #[serde(default)]
    pub resume: Option<PathBuf>,
}

/// A generation job, resolved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenerateJob {
    pub model: PathBuf,
    pub duration: f64,
    pub count: usize,
    pub seed: u64,
    pub temperature: f64,
    pub top_k: usize,
    pub top_p: f64,
    pub iterations: usize,
    /// Candidates per sound (jobs saved before it existed had one).
    #[serde(default = "default_candidates")]
    pub candidates: usize,
    /// Keep trailing silence (jobs saved before it existed were exact).
    #[serde(default = "default_exact")]
    pub exact_duration: bool,
}

/// Jobs saved before sounds were cut after dying away kept their full length.
fn default_exact() -> bool {
    true
}

/// One candidate per sound: the default of requests and of jobs saved before the field.
pub fn default_candidates() -> usize {
    1
}

impl GenerateJob {
    pub fn settings(&self) -> GenerateSettings {
        GenerateSettings {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            iterations: self.iterations,
            candidates: self.candidates,
            exact_duration: self.exact_duration,
        }
    }
}

/// The job thread: one job at a time, forever. Runs at a lower scheduling priority than
/// the HTTP server so pages and API calls stay quick while training uses every core.
pub fn spawn_worker(studio: Arc<Studio>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("distill-studio-jobs".into())
        .spawn(move || {
            lower_priority();
            loop {
                let job = studio.jobs.take_next();
                let id = job.id;
                let (state, result, error, checkpoint) = run_job(&studio, job);
                studio.jobs.finish(id, state, result, error, checkpoint);
            }
        })
        .map(|_| ())
}

/// Lowers the calling thread's scheduling priority (Linux: nice is per thread; threads it
/// starts inherit it).
pub fn lower_priority() {
    #[cfg(unix)]
    // SAFETY: nice only changes the scheduling priority of the calling thread.
    unsafe {
        let _ = libc::nice(10);
    }
}

type Ending = (JobState, Json, Option<String>, Option<PathBuf>);

fn run_job(studio: &Studio, job: Taken) -> Ending {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match job.kind {
        JobKind::Train => serde_json::from_value::<TrainJob>(job.request.clone())
            .map_err(anyhow::Error::from)
            .and_then(|t| run_train(studio, job.id, &t, &job.cancel)),
        JobKind::Generate => serde_json::from_value::<GenerateJob>(job.request.clone())
            .map_err(anyhow::Error::from)
            .and_then(|g| run_generate(studio, job.id, &g, &job.cancel)),
    }));
    match outcome {
        Ok(Ok(ending)) => ending,
        Ok(Err(e)) => (JobState::Failed, Json::Null, Some(format!("{e:#}")), None),
        Err(_) => (
            JobState::Failed,
            Json::Null,
            Some("the job stopped on an internal error (a panic)".into()),
            None,
        ),
    }
}

fn run_train(
    studio: &Studio,
    id: u64,
    t: &TrainJob,
    cancel: &CancelToken,
) -> anyhow::Result<Ending> {
    let device = studio.backend.device()?;
    let options = TrainOptions {
        overrides: t.overrides.clone(),
        seed: t.seed,
        preview_every: t.preview_every,
        resume: t.resume.clone(),
        ..TrainOptions::new(&t.data, &t.output)
    };
    let report_dir = t.output.with_extension("report");
    let mut on_event = |e: &Event| {
        // Checkpoints are written during the run; the job records the last one at the end.
        if matches!(e, Event::Checkpoint { .. }) {
            return;
        }
        let mut v = serde_json::to_value(e).unwrap_or(Json::Null);
        if let Event::Preview { files, .. } = e {
            // The page fetches previews by their path inside the report folder.
            v["files"] = files
                .iter()
                .filter_map(|f| f.strip_prefix(&report_dir).ok())
                .map(|f| Json::from(f.to_string_lossy().into_owned()))
                .collect();
        }
        studio.jobs.push_event(id, v);
    };
    let outcome = train(&options, &device, &mut on_event, cancel)?;
    Ok(match outcome {
        TrainOutcome::Finished { model, .. } => (
            JobState::Finished,
            json!({"model": file_name(&model)}),
            None,
            None,
        ),
        TrainOutcome::Stopped { checkpoint, .. } => {
            (JobState::Cancelled, Json::Null, None, Some(checkpoint))
        }
    })
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn run_generate(
    studio: &Studio,
    id: u64,
    g: &GenerateJob,
    cancel: &CancelToken,
) -> anyhow::Result<Ending> {
    let device = studio.backend.device()?;
    let samples = duration_samples(g.duration)?;
    let model = ModelFile::load(&g.model)?;
    let generator = Generator::new(&model, &device, studio.backend.decoding(), g.settings())?;
    let dir = studio.roots.generated.join(id.to_string());
    std::fs::create_dir_all(&dir)?;
    let seeds = sound_seeds(g.seed, g.count);
    let total = generator.tokens_for(samples) * g.count;
    let mut done = 0usize;
    let mut reported = 0usize;
    let mut sounds = Vec::new();
    for (b, batch) in seeds.chunks(BATCH).enumerate() {
        if cancel.is_cancelled() {
            return Ok((JobState::Cancelled, json!({"sounds": sounds}), None, None));
        }
        let mut rngs: Vec<StdRng> = batch.iter().map(|&s| StdRng::seed_from_u64(s)).collect();
        let mut tick = || {
            done += 1;
            // About 50 progress events per job.
            if done * 50 / total.max(1) > reported {
                reported = done * 50 / total.max(1);
                studio.jobs.push_event(
                    id,
                    json!({"event": "progress", "done": done, "total": total}),
                );
            }
        };
        let rendered = generator.render_many(samples, &mut rngs, &mut tick)?;
        for (j, (sound, &seed)) in rendered.iter().zip(batch).enumerate() {
            let file = SoundFile {
                model: &g.model,
                model_id: model.metadata.model_id.as_deref(),
                seed,
                base_seed: g.seed,
                index: b * BATCH + j,
                count: g.count,
                duration_s: g.duration,
                settings: generator.settings(),
                format: WavFormat::default(),
                backend: studio.backend.name(),
            };
            let wav = write_sound(&dir, sound, &file)?;
            let info =
                super::routes::generate::result_info(studio, id, &wav.with_extension("json"))
                    .unwrap_or(Json::Null);
            studio
                .jobs
                .push_event(id, json!({"event": "sound", "result": info}));
            sounds.push(info);
        }
    }
    Ok((JobState::Finished, json!({"sounds": sounds}), None, None))
}
