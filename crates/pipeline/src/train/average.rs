//! An exponential moving average of a model's weights over its optimiser steps.
//!
//! A prior trained on a few dozen code sequences ends wherever its last noisy steps left it;
//! the average over the recent steps sits nearer the middle of that wandering, and it is the
//! average that is validated and kept.

use weights::{HostData, HostTensor, StateDict};

/// Name under which a checkpoint stores the number of steps averaged (the rest of the
/// averaged state is stored under [`PREFIX`] + the weight's own name).
const STEPS_KEY: &str = "weight_average.steps";
/// Prefix of the averaged weights in a checkpoint's state.
const PREFIX: &str = "weight_average.";

/// The running average of a model's floating-point weights.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightAverage {
    decay: f64,
    steps: u64,
    state: StateDict,
}

impl WeightAverage {
    /// An empty average: the first [`Self::update`] starts it from that step's weights
    /// (reading the weights before any step would initialise a lazy model's parameters in
    /// another order, and so change its training).
    pub fn new(decay: f64) -> Self {
        Self {
            decay,
            steps: 0,
            state: StateDict::new(),
        }
    }

    /// True before the first update.
    pub fn is_empty(&self) -> bool {
        self.state.is_empty()
    }

    /// The decay of the next step: the configured one, warmed up over the first steps
    /// (`(1 + t) / (10 + t)`) so the early weights are forgotten quickly.
    fn step_decay(&self) -> f64 {
        let t = self.steps as f64;
        self.decay.min((1.0 + t) / (10.0 + t))
    }

    /// Folds in the weights after one optimiser step (the first is taken as it is). Integer
    /// and boolean tensors (buffers) are taken as they are; a float weight that changes size
    /// or type is an error (the model's shape cannot change while it trains).
    pub fn update(&mut self, current: &StateDict) -> anyhow::Result<()> {
        let d = self.step_decay();
        for (name, now) in current {
            match (self.state.get_mut(name), &now.data) {
                (Some(avg), HostData::F32(values)) => {
                    let HostData::F32(acc) = &mut avg.data else {
                        anyhow::bail!("averaged weight '{name}' changed type");
                    };
                    if acc.len() != values.len() {
                        anyhow::bail!(
                            "averaged weight '{name}' changed size ({} → {})",
                            acc.len(),
                            values.len()
                        );
                    }
                    for (a, &v) in acc.iter_mut().zip(values) {
                        *a = (d * f64::from(*a) + (1.0 - d) * f64::from(v)) as f32;
                    }
                }
                _ => {
                    self.state.insert(name.clone(), now.clone());
                }
            }
        }
        self.steps += 1;
        Ok(())
    }

    /// The averaged weights.
    pub fn state(&self) -> &StateDict {
        &self.state
    }

    /// Adds this average to a checkpoint's state under its own names.
    pub fn store(&self, into: &mut StateDict) {
        for (name, t) in &self.state {
            into.insert(format!("{PREFIX}{name}"), t.clone());
        }
        into.insert(
            STEPS_KEY.to_string(),
            HostTensor::i64(vec![1], vec![self.steps as i64]),
        );
    }

    /// Takes a stored average out of a checkpoint's state (leaving the model's own weights),
    /// or `None` when the checkpoint holds none.
    pub fn take(decay: f64, from: &mut StateDict) -> anyhow::Result<Option<Self>> {
        let Some(steps) = from.remove(STEPS_KEY) else {
            return Ok(None);
        };
        let steps = steps
            .to_i64(STEPS_KEY)?
            .first()
            .copied()
            .and_then(|s| u64::try_from(s).ok())
            .ok_or_else(|| anyhow::anyhow!("checkpoint: bad '{STEPS_KEY}'"))?;
        let names: Vec<String> = from
            .keys()
            .filter(|k| k.starts_with(PREFIX))
            .cloned()
            .collect();
        let mut state = StateDict::new();
        for name in names {
            if let Some(t) = from.remove(&name) {
                state.insert(name[PREFIX.len()..].to_string(), t);
            }
        }
        Ok(Some(Self {
            decay,
            steps,
            state,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::WeightAverage;
    use weights::{HostData, HostTensor, StateDict};

    fn dict(w: f32) -> StateDict {
        let mut d = StateDict::new();
        d.insert("w".into(), HostTensor::f32(vec![2], vec![w, 2.0 * w]));
        d.insert("mask".into(), HostTensor::i64(vec![1], vec![w as i64]));
        d
    }

    fn values(avg: &WeightAverage) -> Vec<f32> {
        match &avg.state()["w"].data {
            HostData::F32(v) => v.clone(),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn the_average_follows_the_warmed_up_exponential_recurrence() {
        let mut avg = WeightAverage::new(0.5);
        assert!(avg.is_empty());
        avg.update(&dict(0.0)).expect("first");
        assert!(!avg.is_empty());
        assert_eq!(values(&avg), vec![0.0, 0.0]);
        // Then decay min(0.5, (1 + t) / (10 + t)) after t steps: 2/11, 3/12, …, later 0.5.
        avg.update(&dict(10.0)).expect("same shape");
        let first = (1.0 - 2.0 / 11.0) * 10.0;
        assert!((values(&avg)[0] - first as f32).abs() < 1e-5);
        avg.update(&dict(20.0)).expect("same shape");
        let expect = 0.25 * first + 0.75 * 20.0;
        assert!((values(&avg)[0] - expect as f32).abs() < 1e-4);
        for _ in 0..50 {
            avg.update(&dict(4.0)).expect("same shape");
        }
        let v = values(&avg);
        assert!(
            (v[0] - 4.0).abs() < 1e-4 && (v[1] - 8.0).abs() < 1e-4,
            "{v:?}"
        );
        // Buffers are copied, not averaged.
        assert_eq!(avg.state()["mask"].data, HostData::I64(vec![4]));
    }

    #[test]
    fn a_weight_that_changes_size_is_an_error() {
        let mut avg = WeightAverage::new(0.9);
        avg.update(&dict(1.0)).expect("first");
        let mut bad = dict(1.0);
        bad.insert("w".into(), HostTensor::f32(vec![3], vec![1.0; 3]));
        assert!(avg.update(&bad).is_err());
    }

    #[test]
    fn a_stored_average_is_taken_back_whole_and_leaves_the_model_weights() {
        let mut avg = WeightAverage::new(0.9);
        avg.update(&dict(1.0)).expect("first");
        avg.update(&dict(3.0)).expect("same shape");
        let mut ck = dict(7.0);
        avg.store(&mut ck);
        let back = WeightAverage::take(0.9, &mut ck)
            .expect("well formed")
            .expect("stored");
        assert_eq!(back, avg);
        assert_eq!(ck, dict(7.0));
        assert!(
            WeightAverage::take(0.9, &mut dict(1.0))
                .expect("nothing stored")
                .is_none()
        );
    }
}
