//! The one epoch loop both stages run: train, validate, keep the best weights, report,
//! checkpoint; stop cleanly when asked.

use std::path::Path;
use std::time::{Duration, Instant};

use weights::StateDict;

use super::checkpoint::{CheckpointMeta, Checkpoints, StageCheckpoint};
use super::events::{EpochReport, Event, StageName};
use super::optim::cosine_lr;
use crate::cancel::CancelToken;
use crate::modelfile::EpochMetrics;

/// The best validation loss so far, its (1-based) epoch and its weights.
pub type Best = Option<(f64, usize, StateDict)>;

/// A distinct, reproducible seed per (run seed, purpose, epoch): resuming at an epoch
/// boundary replays the same randomness as an uninterrupted run.
pub fn epoch_seed(seed: u64, purpose: u64, epoch: usize) -> u64 {
    let mut x = seed
        ^ purpose.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (epoch as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    // splitmix64 finaliser
    x ^= x >> 30;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// One training stage as the epoch loop sees it.
pub trait Stage {
    const NAME: StageName;

    fn epochs(&self) -> usize;

    fn base_lr(&self) -> f64;

    /// Epochs without a better validation loss after which the stage stops (none: all).
    fn patience(&self) -> Option<usize> {
        None
    }

    /// One pass over the training data at learning rate `lr` (0-based `epoch`): the mean
    /// loss and the number of skipped (non-finite) steps, or `None` when the run was
    /// cancelled mid-epoch (the partial epoch is dropped).
    fn train_epoch(
        &mut self,
        epoch: usize,
        lr: f64,
        run: &mut Runner,
    ) -> anyhow::Result<Option<(f64, usize)>>;

    /// The validation loss after `epoch` (and any per-epoch output such as previews).
    fn validate(&mut self, epoch: usize, run: &mut Runner) -> anyhow::Result<f64>;

    /// The current weights in inference form (kept when they are the best so far).
    fn weights(&self) -> anyhow::Result<StateDict>;

    /// The epoch's extra metrics (and warnings, through `run`), once the best is known.
    fn metrics(
        &mut self,
        epoch: usize,
        train_loss: f64,
        val_loss: f64,
        best_val_loss: f64,
        previous: Option<&EpochReport>,
        run: &mut Runner,
    ) -> EpochMetrics;

    /// Everything a resumed run needs, after `epoch` completed epochs.
    fn capture(
        &self,
        epoch: usize,
        best: &Best,
        history: &[EpochReport],
    ) -> anyhow::Result<StageCheckpoint>;
}

/// Where a stage starts: nothing, or a checkpoint's state.
pub struct StageStart {
    pub epoch: usize,
    pub best: Best,
    pub history: Vec<EpochReport>,
}

impl StageStart {
    pub fn fresh() -> Self {
        Self {
            epoch: 0,
            best: None,
            history: Vec::new(),
        }
    }
}

/// How a stage's epochs went.
pub struct StageRun {
    /// False when the run was stopped early (the checkpoint holds its state).
    pub completed: bool,
    /// Set when the stage ended before its last epoch because the validation loss had not
    /// improved for [`Stage::patience`] epochs: the epochs it trained.
    pub plateau_stop: Option<usize>,
    pub best: Best,
    pub history: Vec<EpochReport>,
}

impl StageRun {
    /// The best epoch: (validation loss, 1-based epoch, weights); an error if none ran.
    pub fn best(&self) -> anyhow::Result<(f64, usize, &StateDict)> {
        match &self.best {
            Some((loss, epoch, weights)) => Ok((*loss, *epoch, weights)),
            None => anyhow::bail!("training ran no epoch"),
        }
    }
}

/// What the stages share while they run: the event stream, cancellation, checkpoints and
/// the report folder.
pub struct Runner<'a> {
    events: &'a mut dyn FnMut(&Event),
    cancel: &'a CancelToken,
    /// Stop (as cancelling does) after this many epochs of this invocation (tests of resume).
    stop_after: Option<usize>,
    epochs_run: usize,
    checkpoints: &'a Checkpoints,
    meta: CheckpointMeta,
    pub report_dir: &'a Path,
    /// Previews every N epochs (0 = never).
    pub preview_every: usize,
    pub warnings: Vec<String>,
    /// When the current stage must end (a time budget), if any.
    pub deadline: Option<Instant>,
    /// When the whole run must end (a time budget), if any.
    pub run_deadline: Option<Instant>,
    /// Epochs the current stage runs to (its configuration's, or fewer to meet the deadline).
    epochs_planned: usize,
    /// Least time between checkpoint writes ([`CHECKPOINT_INTERVAL`]).
    pub checkpoint_interval: Duration,
}

impl<'a> Runner<'a> {
    pub fn new(
        events: &'a mut dyn FnMut(&Event),
        cancel: &'a CancelToken,
        stop_after: Option<usize>,
        checkpoints: &'a Checkpoints,
        meta: CheckpointMeta,
        report_dir: &'a Path,
        preview_every: usize,
    ) -> Self {
        Self {
            events,
            cancel,
            stop_after,
            epochs_run: 0,
            checkpoints,
            meta,
            report_dir,
            preview_every,
            warnings: Vec::new(),
            deadline: None,
            run_deadline: None,
            epochs_planned: 0,
            checkpoint_interval: CHECKPOINT_INTERVAL,
        }
    }

    pub fn emit(&mut self, event: Event) {
        (self.events)(&event);
    }

    pub fn warn(&mut self, message: String) {
        self.warnings.push(message.clone());
        self.emit(Event::Warning { message });
    }

    /// Whether cancelling was asked for (mid-epoch: the partial epoch is dropped).
    pub fn cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Whether to stop before the next epoch: cancelled, or this invocation's epoch budget.
    fn should_stop(&self) -> bool {
        self.cancelled() || self.stop_after.is_some_and(|m| self.epochs_run >= m)
    }

    /// Whether epoch `epoch` (1-based) gets a preview: every N, and the stage's last.
    pub fn preview_due(&self, epoch: usize) -> bool {
        self.preview_every > 0
            && (epoch.is_multiple_of(self.preview_every) || epoch == self.epochs_planned)
    }

    pub fn checkpoint_dir(&self) -> &Path {
        &self.checkpoints.dir
    }
}

/// Least time between two checkpoint writes within a stage. Writing one took ~25 ms for
/// drums20's models, a tenth of a reference VQ-VAE epoch (9 % of the whole run's wall time
/// when every epoch wrote one); the last completed epoch's is always written when the stage
/// ends, stops or fails, so only a crash or a kill loses up to this much training.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);

/// Runs a stage's remaining epochs.
pub fn run_epochs<S: Stage>(
    stage: &mut S,
    start: StageStart,
    run: &mut Runner,
) -> anyhow::Result<StageRun> {
    let mut pending = None;
    let result = epoch_loop(stage, start, run, &mut pending);
    // Whatever ended the loop (the last epoch, a stop, cancelling, an error), the last
    // completed epoch's checkpoint reaches the disk; the loop's own error comes first.
    let written = pending.map(|ck| write_checkpoint::<S>(run, &ck));
    let stage_run = result?;
    written.transpose()?;
    Ok(stage_run)
}

fn write_checkpoint<S: Stage>(run: &mut Runner, ck: &StageCheckpoint) -> anyhow::Result<()> {
    let meta = CheckpointMeta {
        stage: S::NAME,
        ..run.meta.clone()
    };
    run.checkpoints.save(&meta, ck)?;
    let dir = run.checkpoints.dir.clone();
    run.emit(Event::Checkpoint {
        stage: S::NAME,
        epoch: ck.epoch,
        dir,
    });
    Ok(())
}

/// The epochs of [`run_epochs`]; each completed epoch's checkpoint goes to `pending`, and
/// to the disk when [`Runner::checkpoint_interval`] has passed since the last write.
fn epoch_loop<S: Stage>(
    stage: &mut S,
    start: StageStart,
    run: &mut Runner,
    pending: &mut Option<StageCheckpoint>,
) -> anyhow::Result<StageRun> {
    let mut last_write = Instant::now();
    let StageStart {
        epoch: first,
        mut best,
        mut history,
    } = start;
    let mut epochs = stage.epochs();
    run.epochs_planned = epochs;
    run.emit(Event::StageStarted {
        stage: S::NAME,
        epochs,
        first_epoch: first + 1,
    });
    let mut completed = true;
    let mut plateau_stop = None;
    let mut epoch = first;
    // `epochs` may shrink after the first epoch (a time budget), so no fixed range.
    while epoch < epochs {
        if run.should_stop() {
            completed = false;
            break;
        }
        // Checked before the epoch, so a run resumed after such a stop stops again at once.
        if let (Some(patience), Some((_, best_epoch, _))) = (stage.patience(), &best)
            && epoch - best_epoch >= patience
        {
            plateau_stop = Some(epoch);
            break;
        }
        let started = Instant::now();
        let lr = cosine_lr(stage.base_lr(), epoch, epochs);
        let Some((train_loss, skipped_steps)) = stage.train_epoch(epoch, lr, run)? else {
            completed = false;
            break;
        };
        let val_loss = stage.validate(epoch, run)?;
        let is_best = best.as_ref().is_none_or(|(b, _, _)| val_loss < *b);
        if is_best {
            best = Some((val_loss, epoch + 1, stage.weights()?));
        }
        let best_val_loss = best.as_ref().map_or(val_loss, |(b, _, _)| *b);
        let metrics = stage.metrics(
            epoch,
            train_loss,
            val_loss,
            best_val_loss,
            history.last(),
            run,
        );
        let seconds = started.elapsed().as_secs_f64();
        if epoch == first
            && let Some(deadline) = run.deadline
        {
            // A time budget: as many epochs as the first one's time fits before the deadline
            // (at least this one). The learning rate of the first epoch is the base rate for
            // any length, so shortening the schedule now keeps it a whole cosine.
            let left = deadline
                .saturating_duration_since(Instant::now())
                .as_secs_f64();
            let more = (left / seconds.max(1e-3)).floor() as usize;
            epochs = epochs.min(epoch + 1 + more);
            run.epochs_planned = epochs;
        }
        let report = EpochReport {
            stage: S::NAME,
            epoch: epoch + 1,
            epochs,
            train_loss,
            val_loss,
            learning_rate: lr,
            seconds,
            skipped_steps,
            metrics,
            is_best,
            eta_s: Some(seconds * (epochs - epoch - 1) as f64),
            run_eta_s: run
                .run_deadline
                .map(|d| d.saturating_duration_since(Instant::now()).as_secs_f64()),
        };
        history.push(report.clone());
        run.emit(Event::Epoch(report));
        run.epochs_run += 1;
        *pending = Some(stage.capture(epoch + 1, &best, &history)?);
        if last_write.elapsed() >= run.checkpoint_interval
            && let Some(ck) = pending.take()
        {
            write_checkpoint::<S>(run, &ck)?;
            last_write = Instant::now();
        }
        epoch += 1;
    }
    Ok(StageRun {
        completed,
        plateau_stop,
        best,
        history,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use weights::HostTensor;

    /// A stage whose validation losses are scripted and whose "weights" are its epoch
    /// number, so the kept weights show which epoch they came from.
    struct Scripted {
        val: Vec<f64>,
        current: usize,
        seen_best: Vec<f64>,
        /// Cancels during this (0-based) epoch's training.
        cancel_in: Option<(usize, CancelToken)>,
        patience: Option<usize>,
    }

    fn weights_of(epoch: usize) -> StateDict {
        let mut d = StateDict::new();
        d.insert("w".into(), HostTensor::f32(vec![1], vec![epoch as f32]));
        d
    }

    impl Stage for Scripted {
        const NAME: StageName = StageName::Prior;

        fn epochs(&self) -> usize {
            self.val.len()
        }

        fn base_lr(&self) -> f64 {
            1e-3
        }

        fn patience(&self) -> Option<usize> {
            self.patience
        }

        fn train_epoch(
            &mut self,
            epoch: usize,
            _lr: f64,
            _run: &mut Runner,
        ) -> anyhow::Result<Option<(f64, usize)>> {
            if let Some((at, token)) = &self.cancel_in
                && *at == epoch
            {
                token.cancel();
                return Ok(None);
            }
            self.current = epoch + 1;
            Ok(Some((10.0 - epoch as f64, 0)))
        }

        fn validate(&mut self, epoch: usize, _run: &mut Runner) -> anyhow::Result<f64> {
            Ok(self.val[epoch])
        }

        fn weights(&self) -> anyhow::Result<StateDict> {
            Ok(weights_of(self.current))
        }

        fn metrics(
            &mut self,
            _epoch: usize,
            _train_loss: f64,
            _val_loss: f64,
            best_val_loss: f64,
            _previous: Option<&EpochReport>,
            _run: &mut Runner,
        ) -> EpochMetrics {
            self.seen_best.push(best_val_loss);
            EpochMetrics::default()
        }

        fn capture(
            &self,
            epoch: usize,
            best: &Best,
            history: &[EpochReport],
        ) -> anyhow::Result<StageCheckpoint> {
            Ok(StageCheckpoint {
                epoch,
                model: weights_of(self.current),
                param_ids: Vec::new(),
                optim: Vec::new(),
                best: best.clone(),
                history: history.to_vec(),
            })
        }
    }

    fn test_meta(dir: &Path) -> CheckpointMeta {
        CheckpointMeta {
            version: 1,
            stage: StageName::Prior,
            epoch: 0,
            seed: 0,
            data: dir.to_path_buf(),
            output: dir.join("m.distill"),
            vqvae_config: Default::default(),
            prior_config: Default::default(),
            train_prior: true,
            param_ids: Vec::new(),
            best_val_loss: None,
            best_epoch: None,
            history: Vec::new(),
            model_file: String::new(),
            best_file: None,
            optim_file: String::new(),
        }
    }

    /// The epochs whose checkpoints were written, and the epoch of the one on disk, for a
    /// four-epoch stage with checkpoint writes at least `interval` apart, cancelled during
    /// epoch `cancel_in` (0-based) if given.
    fn checkpoints_written(interval: Duration, cancel_in: Option<usize>) -> (Vec<usize>, usize) {
        let dir = tempfile::tempdir().expect("temp dir");
        let checkpoints = Checkpoints::for_output(&dir.path().join("m.distill"));
        let cancel = CancelToken::new();
        let mut written = Vec::new();
        let mut sink = |e: &Event| {
            if let Event::Checkpoint { epoch, .. } = e {
                written.push(*epoch);
            }
        };
        let meta = test_meta(dir.path());
        let mut run = Runner::new(&mut sink, &cancel, None, &checkpoints, meta, dir.path(), 0);
        run.checkpoint_interval = interval;
        let mut stage = Scripted {
            val: vec![3.0, 1.0, 2.0, 1.5],
            current: 0,
            seen_best: Vec::new(),
            cancel_in: cancel_in.map(|e| (e, cancel.clone())),
            patience: None,
        };
        run_epochs(&mut stage, StageStart::fresh(), &mut run).expect("runs");
        drop(run);
        let (_, ck) = Checkpoints::load(&checkpoints.dir).expect("checkpoint");
        (written, ck.epoch)
    }

    #[test]
    fn checkpoints_are_written_at_most_every_interval_and_always_at_the_end() {
        let every = Duration::ZERO;
        assert_eq!(checkpoints_written(every, None), (vec![1, 2, 3, 4], 4));
        let rarely = Duration::from_secs(3600);
        assert_eq!(checkpoints_written(rarely, None), (vec![4], 4));
        // Cancelled during the third epoch: the second, the last completed, is on disk.
        assert_eq!(checkpoints_written(rarely, Some(2)), (vec![2], 2));
        assert_eq!(checkpoints_written(every, Some(2)), (vec![1, 2], 2));
    }

    #[test]
    fn a_plateau_of_patience_epochs_ends_the_stage_and_keeps_the_best() {
        let dir = tempfile::tempdir().expect("temp dir");
        let checkpoints = Checkpoints::for_output(&dir.path().join("m.distill"));
        let cancel = CancelToken::new();
        let mut sink = |_: &Event| {};
        let meta = test_meta(dir.path());
        let mut run = Runner::new(&mut sink, &cancel, None, &checkpoints, meta, dir.path(), 0);
        // Best at epoch 2; epochs 3 and 4 are no better: with a patience of 2 the stage
        // stops after epoch 4 (of 7), keeping epoch 2's weights.
        let val = vec![3.0, 1.0, 2.0, 1.5, 0.5, 0.4, 0.3];
        let scripted = |val: Vec<f64>, patience| Scripted {
            val,
            current: 0,
            seen_best: Vec::new(),
            cancel_in: None,
            patience: Some(patience),
        };
        let mut stage = scripted(val.clone(), 2);
        let result = run_epochs(&mut stage, StageStart::fresh(), &mut run).expect("runs");
        assert!(result.completed);
        assert_eq!(result.plateau_stop, Some(4));
        assert_eq!(result.history.len(), 4);
        let (loss, epoch, weights) = result.best().expect("an epoch ran");
        assert_eq!((loss, epoch, weights), (1.0, 2, &weights_of(2)));
        // Resumed from that stop, the stage ends again before training anything.
        let start = StageStart {
            epoch: 4,
            best: result.best.clone(),
            history: result.history.clone(),
        };
        let mut stage = scripted(val.clone(), 2);
        let again = run_epochs(&mut stage, start, &mut run).expect("runs");
        assert_eq!((again.plateau_stop, again.history.len()), (Some(4), 4));
        // A longer patience reaches the later improvements and trains every epoch.
        let mut stage = scripted(val, 3);
        let all = run_epochs(&mut stage, StageStart::fresh(), &mut run).expect("runs");
        assert_eq!((all.plateau_stop, all.history.len()), (None, 7));
        assert_eq!(all.best().expect("an epoch ran").1, 7);
    }

    #[test]
    fn the_best_validation_epochs_weights_are_kept_not_the_last() {
        let dir = tempfile::tempdir().expect("temp dir");
        let checkpoints = Checkpoints::for_output(&dir.path().join("m.distill"));
        let meta = test_meta(dir.path());
        let cancel = CancelToken::new();
        let mut events = Vec::new();
        let mut sink = |e: &Event| events.push(e.clone());
        let mut run = Runner::new(&mut sink, &cancel, None, &checkpoints, meta, dir.path(), 0);
        let mut stage = Scripted {
            val: vec![3.0, 1.0, 2.0, 1.5],
            current: 0,
            seen_best: Vec::new(),
            cancel_in: None,
            patience: None,
        };
        let result = run_epochs(&mut stage, StageStart::fresh(), &mut run).expect("runs");
        let (loss, epoch, weights) = result.best().expect("an epoch ran");
        assert_eq!((loss, epoch), (1.0, 2));
        assert_eq!(
            *weights,
            weights_of(2),
            "the kept weights are epoch 2's, not the last"
        );
        let best_flags: Vec<bool> = result.history.iter().map(|r| r.is_best).collect();
        assert_eq!(best_flags, [true, true, false, false]);
        assert_eq!(stage.seen_best, [3.0, 1.0, 1.0, 1.0]);
        // The checkpoint on disk holds the same best weights.
        let (_, ck) = Checkpoints::load(&checkpoints.dir).expect("checkpoint");
        let (ck_loss, ck_epoch, ck_weights) = ck.best.expect("best in the checkpoint");
        assert_eq!((ck_loss, ck_epoch), (1.0, 2));
        assert_eq!(ck_weights, weights_of(2));
        drop(run);
        assert!(matches!(
            events.last(),
            Some(Event::Checkpoint { epoch: 4, .. })
        ));
    }
}
