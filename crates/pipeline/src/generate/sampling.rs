//! Sampling the prior's tokens for a [`Generator`]: one sequence per random generator, on
//! the host fast path (all sequences in lockstep) or through the backend's cache.

use anyhow::bail;
use burn::prelude::*;
use prior_model::sample::{sample, sample_distribution};
use prior_model::{HostDecoder, HostState};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::Generator;
use crate::evaluate::floats;

/// Tokens sampled after a context, with the prior's log-probability of each (temperature 1,
/// no truncation: the model's own likelihood, whatever the sampling settings; zeros when
/// there is a single candidate).
pub(super) struct Sampled {
    pub tokens: Vec<i64>,
    pub log_probs: Vec<f32>,
}

impl Sampled {
    fn with_capacity(n: usize) -> Self {
        Self {
            tokens: Vec::with_capacity(n),
            log_probs: Vec::with_capacity(n),
        }
    }
}

/// Natural log-probability of `token` under the softmax of `logits`.
fn log_prob(logits: &[f32], token: usize) -> f32 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let sum: f64 = logits.iter().map(|&v| f64::from(v - max).exp()).sum();
    logits
        .get(token)
        .map_or(f32::NEG_INFINITY, |&v| v - max - sum.ln() as f32)
}

/// The candidate to keep: the one whose least likely time step (the summed log-probability of
/// one column's tokens, `per_step` of them) is most likely. A sum over the whole sound would
/// favour near-silence (highly predictable) and verbatim copies; the weakest column singles
/// out candidates with an implausible burst. Ties keep the earlier candidate.
fn pick_candidate<'a>(log_probs: impl IntoIterator<Item = &'a [f32]>, per_step: usize) -> usize {
    let worst = |lp: &[f32]| -> f64 {
        lp.chunks(per_step.max(1))
            .map(|c| c.iter().map(|&v| f64::from(v)).sum::<f64>())
            .fold(f64::INFINITY, f64::min)
    };
    let mut best = 0;
    let mut best_score = f64::NEG_INFINITY;
    for (i, lp) in log_probs.into_iter().enumerate() {
        let score = worst(lp);
        if score > best_score {
            best = i;
            best_score = score;
        }
    }
    best
}

impl Generator {
    /// Samples `count` tokens after each context (fed first, from position 0), one sequence
    /// per random generator: on the host path all sequences step together, on a device one
    /// after the other.
    pub(super) fn continue_all(
        &self,
        contexts: &[Vec<i64>],
        count: usize,
        rngs: &mut [StdRng],
        on_token: &mut dyn FnMut(),
    ) -> anyhow::Result<Vec<Sampled>> {
        match &self.host {
            Some(host) => self.continue_many(host, contexts, count, rngs, on_token),
            None => contexts
                .iter()
                .zip(rngs.iter_mut())
                .map(|(c, rng)| self.continue_on_device(c, count, rng, on_token))
                .collect(),
        }
    }

    /// The next token and its log-probability (only when candidates are compared: 0
    /// otherwise, keeping the softmax off the single-candidate path): from the stored
    /// first-token distribution, or sampled from logits.
    fn next_token(&self, logits: Option<&[f32]>, rng: &mut StdRng) -> (usize, f32) {
        if self.settings.candidates <= 1 {
            let t = match logits {
                Some(l) => sample(l, &self.sampling, rng),
                None => sample_distribution(&self.first_token, rng),
            };
            return (t, 0.0);
        }
        match logits {
            Some(l) => {
                let t = sample(l, &self.sampling, rng);
                (t, log_prob(l, t))
            }
            None => {
                let t = sample_distribution(&self.first_token, rng);
                let total: f64 = self.first_token.iter().sum();
                let p = self.first_token.get(t).copied().unwrap_or(0.0) / total;
                (t, p.ln() as f32)
            }
        }
    }

    /// One sequence through the backend's key/value cache.
    fn continue_on_device(
        &self,
        context: &[i64],
        count: usize,
        rng: &mut StdRng,
        on_token: &mut dyn FnMut(),
    ) -> anyhow::Result<Sampled> {
        let mut cache = self.prior.new_cache(1, &self.device);
        let mut out = Vec::with_capacity(count);
        let mut log_probs = Vec::with_capacity(count);
        let mut logits = if context.is_empty() {
            None
        } else {
            let prefix = Tensor::<2, Int>::from_data(
                TensorData::new(context.to_vec(), [1, context.len()]),
                &self.device,
            );
            Some(floats(self.prior.prefill(prefix, &mut cache)?, "logits")?)
        };
        for _ in 0..count {
            let (next, lp) = self.next_token(logits.as_deref(), rng);
            let next = next as i64;
            out.push(next);
            log_probs.push(lp);
            on_token();
            if out.len() < count {
                let t = Tensor::<1, Int>::from_data(TensorData::new(vec![next], [1]), &self.device);
                logits = Some(floats(self.prior.step(t, &mut cache)?, "logits")?);
            }
        }
        Ok(Sampled {
            tokens: out,
            log_probs,
        })
    }

    /// [`Self::continue_all`] on the host path: the sequences step in lockstep.
    fn continue_many(
        &self,
        host: &HostDecoder,
        contexts: &[Vec<i64>],
        count: usize,
        rngs: &mut [StdRng],
        on_token: &mut dyn FnMut(),
    ) -> anyhow::Result<Vec<Sampled>> {
        let mut states: Vec<HostState> = contexts.iter().map(|_| host.new_state()).collect();
        let mut logits: Vec<Option<Vec<f32>>> = Vec::with_capacity(contexts.len());
        for (state, context) in states.iter_mut().zip(contexts) {
            logits.push(if context.is_empty() {
                None
            } else {
                let tokens = context
                    .iter()
                    .map(|&t| usize::try_from(t))
                    .collect::<Result<Vec<usize>, _>>()?;
                Some(host.prefill(state, &tokens)?.to_vec())
            });
        }
        let mut out: Vec<Sampled> = (0..contexts.len())
            .map(|_| Sampled::with_capacity(count))
            .collect();
        for produced in 1..=count {
            let (next, lps): (Vec<usize>, Vec<f32>) = logits
                .iter()
                .zip(rngs.iter_mut())
                .map(|(l, rng)| self.next_token(l.as_deref(), rng))
                .unzip();
            for ((o, &t), &lp) in out.iter_mut().zip(&next).zip(&lps) {
                o.tokens.push(t as i64);
                o.log_probs.push(lp);
                on_token();
            }
            if produced < count {
                host.step_many(&mut states, &next)?;
                for (l, st) in logits.iter_mut().zip(&states) {
                    *l = Some(st.logits().to_vec());
                }
            }
        }
        Ok(out)
    }

    /// Time-major streams of `steps` grid columns, one per generator, continued across
    /// windows: each new window keeps the last half of the previous one as context.
    ///
    /// With several candidates per sound, each generator seeds that many candidate streams
    /// (sampled together) and the one [`pick_candidate`] prefers is kept.
    pub(super) fn time_major(
        &self,
        steps: usize,
        rngs: &mut [StdRng],
        on_token: &mut dyn FnMut(),
    ) -> anyhow::Result<Vec<Vec<i64>>> {
        let n = self.settings.candidates;
        if n <= 1 {
            return Ok(self
                .time_major_streams(steps, rngs, on_token)?
                .into_iter()
                .map(|s| s.tokens)
                .collect());
        }
        let mut candidate_rngs: Vec<StdRng> = rngs
            .iter_mut()
            .flat_map(|rng| {
                (0..n)
                    .map(|_| StdRng::seed_from_u64(rng.random()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut streams = self.time_major_streams(steps, &mut candidate_rngs, on_token)?;
        let per_step = self.grid.tokens_per_step();
        let mut kept = Vec::with_capacity(rngs.len());
        for group in streams.chunks_mut(n) {
            let best = pick_candidate(group.iter().map(|s| s.log_probs.as_slice()), per_step);
            kept.push(std::mem::take(&mut group[best].tokens));
        }
        Ok(kept)
    }

    /// One time-major stream per generator, with each token's log-probability.
    fn time_major_streams(
        &self,
        steps: usize,
        rngs: &mut [StdRng],
        on_token: &mut dyn FnMut(),
    ) -> anyhow::Result<Vec<Sampled>> {
        let per_step = self.grid.tokens_per_step();
        let (_, keep) = self.window_columns()?;
        let want = steps * per_step;
        let mut contexts: Vec<Vec<i64>> = vec![Vec::new(); rngs.len()];
        let mut streams: Vec<Sampled> = (0..rngs.len())
            .map(|_| Sampled::with_capacity(want))
            .collect();
        for (_, columns) in self.window_plan(steps)? {
            let more = self.continue_all(&contexts, columns * per_step, rngs, on_token)?;
            for ((stream, context), m) in streams.iter_mut().zip(&mut contexts).zip(more) {
                stream.tokens.extend(m.tokens);
                stream.log_probs.extend(m.log_probs);
                let t = &stream.tokens;
                *context = t[t.len().saturating_sub(keep * per_step)..].to_vec();
            }
        }
        Ok(streams)
    }

    /// Columns of the prior's context window, and how many of them the next window keeps
    /// as its context (half).
    pub(super) fn window_columns(&self) -> anyhow::Result<(usize, usize)> {
        let window = self.prior.shape().seq_len / self.grid.tokens_per_step();
        if window == 0 {
            bail!("the prior's context is shorter than one time step of the code grid");
        }
        Ok((window, window / 2))
    }

    /// The windows of a time-major sound of `steps` columns: (first new column, new
    /// columns). The first window fills the whole context; each next one writes the
    /// columns after the kept half of the previous one.
    pub(super) fn window_plan(&self, steps: usize) -> anyhow::Result<Vec<(usize, usize)>> {
        let (window, keep) = self.window_columns()?;
        let mut plan = Vec::new();
        let mut done = 0;
        while done < steps {
            let n = if done == 0 {
                window.min(steps)
            } else {
                (window - keep).min(steps - done)
            };
            plan.push((done, n));
            done += n;
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_candidate_with_the_likeliest_weakest_column_is_kept() {
        // Two tokens per column. Candidate 0 is likelier overall (−3.2) but has one
        // implausible column (−2.2); candidate 1 is less likely overall (−3.6) but no column
        // is below −1.2; candidate 2 is worse everywhere.
        let candidates = vec![
            vec![-0.1, -0.1, -1.1, -1.1, -0.4, -0.4],
            vec![-0.6, -0.6, -0.6, -0.6, -0.6, -0.6],
            vec![-0.7, -0.7, -1.5, -1.5, -0.9, -0.9],
        ];
        let pick = |c: &[Vec<f32>], per_step| pick_candidate(c.iter().map(Vec::as_slice), per_step);
        assert_eq!(pick(&candidates, 2), 1);
        // A whole-sound sum would have kept candidate 0: the column grouping matters.
        assert_eq!(pick(&candidates, 6), 0);
        // Ties keep the earlier candidate.
        assert_eq!(pick(&[vec![-1.0; 4], vec![-1.0; 4]], 2), 0);
    }

    #[test]
    fn log_prob_is_the_log_softmax_of_the_chosen_token() {
        let logits = [1.0f32, 2.0, 3.0];
        let z: f64 = logits.iter().map(|&v| f64::from(v).exp()).sum();
        for (t, &v) in logits.iter().enumerate() {
            let want = (f64::from(v).exp() / z).ln();
            assert!((f64::from(log_prob(&logits, t)) - want).abs() < 1e-6);
        }
        // Shifting every logit changes nothing; a token out of range is impossible.
        let shifted: Vec<f32> = logits.iter().map(|v| v + 100.0).collect();
        assert!((log_prob(&shifted, 2) - log_prob(&logits, 2)).abs() < 1e-5);
        assert_eq!(log_prob(&logits, 3), f32::NEG_INFINITY);
    }
}
