//! Training through the library API alone (no command-line types): events in order, a
//! cancel that leaves a resumable checkpoint, and resuming to the uninterrupted result.

use burn::prelude::Device;
use pipeline::cancel::CancelToken;
use pipeline::train::{ConfigOverrides, Event, StageName, TrainOptions, TrainOutcome, train};

use crate::util::sounds;

fn tiny(data: &std::path::Path, out: &std::path::Path) -> TrainOptions {
    TrainOptions {
        seed: Some(5),
        preview_every: Some(0),
        overrides: ConfigOverrides {
            epochs: Some(3),
            batch_size: Some(2),
            lr: Some(0.002),
            hidden_size: Some(32),
            layers: Some(1),
            heads: Some(2),
            ..ConfigOverrides::default()
        },
        ..TrainOptions::new(data, out)
    }
}

/// A compact trace of a run's events: kind, stage and epoch.
fn trace(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Config(_) => Some("config".into()),
            Event::StageStarted { stage, .. } => Some(format!("start {stage}")),
            Event::Epoch(r) => Some(format!("epoch {} {}", r.stage, r.epoch)),
            Event::Checkpoint { stage, epoch, .. } => Some(format!("checkpoint {stage} {epoch}")),
            Event::StageFinished(s) => Some(format!("finished {}", s.stage)),
            Event::Interrupted { by_user, .. } => Some(format!("interrupted {by_user}")),
            Event::Done { .. } => Some("done".into()),
            Event::Warning { .. } | Event::Preview { .. } => None,
        })
        .collect()
}

#[test]
fn training_through_the_library_reports_in_order_and_resumes_after_a_cancel() {
    let (dir, data) = sounds(3);
    let device = Device::flex();

    let full = dir.path().join("full.distill");
    let mut events = Vec::new();
    let outcome = train(
        &tiny(&data, &full),
        &device,
        &mut |e: &Event| events.push(e.clone()),
        &CancelToken::new(),
    )
    .expect("trains");
    assert!(matches!(outcome, TrainOutcome::Finished { ref model, .. } if *model == full));
    // Checkpoints are written at most every 10 s and when a stage ends: the last epoch's comes
    // last (a slow machine may write others between epochs).
    let mut expected = vec!["config".to_string()];
    for stage in ["vqvae", "prior"] {
        expected.push(format!("start {stage}"));
        for epoch in 1..=3 {
            expected.push(format!("epoch {stage} {epoch}"));
        }
        expected.push(format!("checkpoint {stage} 3"));
        expected.push(format!("finished {stage}"));
    }
    expected.push("done".into());
    let traced = trace(&events);
    let kept: Vec<String> = traced
        .iter()
        .enumerate()
        .filter(|(i, t)| {
            !t.starts_with("checkpoint")
                || traced.get(i + 1).is_some_and(|n| n.starts_with("finished"))
        })
        .map(|(_, t)| t.clone())
        .collect();
    assert_eq!(kept, expected, "{traced:?}");

    // Cancelled from the event stream after the second VQ-VAE epoch.
    let part = dir.path().join("part.distill");
    let cancel = CancelToken::new();
    let mut events = Vec::new();
    let outcome = train(
        &tiny(&data, &part),
        &device,
        &mut |e: &Event| {
            if let Event::Epoch(r) = e
                && r.stage == StageName::Vqvae
                && r.epoch == 2
            {
                cancel.cancel();
            }
            events.push(e.clone());
        },
        &cancel,
    )
    .expect("stops cleanly");
    let TrainOutcome::Stopped {
        checkpoint,
        by_user,
    } = outcome
    else {
        panic!("a cancelled run stops: {outcome:?}")
    };
    assert!(by_user);
    assert!(!part.exists(), "no model file before the end");
    assert_eq!(
        trace(&events).last().map(String::as_str),
        Some("interrupted true")
    );
    assert!(
        trace(&events).contains(&"checkpoint vqvae 2".to_string()),
        "the epoch that was cancelled in is checkpointed"
    );

    // Resumed: only the missing epochs run, and the model is the uninterrupted one.
    let resume = TrainOptions {
        resume: Some(checkpoint),
        ..TrainOptions::new(&data, &part)
    };
    let mut events = Vec::new();
    train(
        &resume,
        &device,
        &mut |e: &Event| events.push(e.clone()),
        &CancelToken::new(),
    )
    .expect("resumes");
    let epochs: Vec<String> = trace(&events)
        .into_iter()
        .filter(|t| t.starts_with("epoch vqvae"))
        .collect();
    assert_eq!(epochs, ["epoch vqvae 3"]);
    assert_eq!(
        std::fs::read(&full).expect("full"),
        std::fs::read(&part).expect("resumed"),
        "the resumed model differs from the uninterrupted one"
    );
}
