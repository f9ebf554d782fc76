//! Sampling the prior's tokens for a [`Generator`]: one sequence per random generator, on
//! the host fast path (all sequences in lockstep) or through the backend's cache.

use anyhow::bail;
use burn::prelude::*;
use prior_model::sample::{sample, sample_distribution};
use prior_model::{HostDecoder, HostState};
use rand::rngs::StdRng;

use super::Generator;
use crate::evaluate::floats;

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
    ) -> anyhow::Result<Vec<Vec<i64>>> {
        match &self.host {
            Some(host) => self.continue_many(host, contexts, count, rngs, on_token),
            None => contexts
                .iter()
                .zip(rngs.iter_mut())
                .map(|(c, rng)| self.continue_on_device(c, count, rng, on_token))
                .collect(),
        }
    }

    /// The first token of a sequence: from the stored distribution, or sampled from logits.
    fn next_token(&self, logits: Option<&[f32]>, rng: &mut StdRng) -> usize {
        match logits {
            Some(l) => sample(l, &self.sampling, rng),
            None => sample_distribution(&self.first_token, rng),
        }
    }

    /// One sequence through the backend's key/value cache.
    fn continue_on_device(
        &self,
        context: &[i64],
        count: usize,
        rng: &mut StdRng,
        on_token: &mut dyn FnMut(),
    ) -> anyhow::Result<Vec<i64>> {
        let mut cache = self.prior.new_cache(1, &self.device);
        let mut out = Vec::with_capacity(count);
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
            let next = self.next_token(logits.as_deref(), rng) as i64;
            out.push(next);
            on_token();
            if out.len() < count {
                let t = Tensor::<1, Int>::from_data(TensorData::new(vec![next], [1]), &self.device);
                logits = Some(floats(self.prior.step(t, &mut cache)?, "logits")?);
            }
        }
        Ok(out)
    }

    /// [`Self::continue_all`] on the host path: the sequences step in lockstep.
    fn continue_many(
        &self,
        host: &HostDecoder,
        contexts: &[Vec<i64>],
        count: usize,
        rngs: &mut [StdRng],
        on_token: &mut dyn FnMut(),
    ) -> anyhow::Result<Vec<Vec<i64>>> {
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
        let mut out: Vec<Vec<i64>> = vec![Vec::with_capacity(count); contexts.len()];
        for produced in 1..=count {
            let next: Vec<usize> = logits
                .iter()
                .zip(rngs.iter_mut())
                .map(|(l, rng)| self.next_token(l.as_deref(), rng))
                .collect();
            for (o, &t) in out.iter_mut().zip(&next) {
                o.push(t as i64);
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
    pub(super) fn time_major(
        &self,
        steps: usize,
        rngs: &mut [StdRng],
        on_token: &mut dyn FnMut(),
    ) -> anyhow::Result<Vec<Vec<i64>>> {
        let per_step = self.grid.tokens_per_step();
        let (_, keep) = self.window_columns()?;
        let want = steps * per_step;
        let mut contexts: Vec<Vec<i64>> = vec![Vec::new(); rngs.len()];
        let mut streams: Vec<Vec<i64>> = vec![Vec::with_capacity(want); rngs.len()];
        for (_, columns) in self.window_plan(steps)? {
            let more = self.continue_all(&contexts, columns * per_step, rngs, on_token)?;
            for ((stream, context), m) in streams.iter_mut().zip(&mut contexts).zip(more) {
                stream.extend(m);
                *context = stream[stream.len().saturating_sub(keep * per_step)..].to_vec();
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
