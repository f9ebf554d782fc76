//! Optimiser helpers shared by both stages: cosine schedule, global-norm clipping, and
//! stable parameter ids so optimiser state survives a checkpoint round trip.

use burn::module::{ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;

/// `CosineAnnealingLR(T_max = epochs)` stepped once per epoch, no warm-up.
pub fn cosine_lr(base: f64, epoch: usize, epochs: usize) -> f64 {
    let t = epoch as f64 / epochs.max(1) as f64;
    0.5 * base * (1.0 + (std::f64::consts::PI * t).cos())
}

struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    total: f64,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(p.id) {
            self.total += f64::from(g.powi_scalar(2).sum().into_scalar::<f32>());
        }
    }
}

struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f32,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(p.id) {
            self.grads.register::<D>(p.id, g.mul_scalar(self.factor));
        }
    }
}

/// One optimiser step on `loss`: backward pass, global-norm clip, AdamW update. Returns the
/// updated model and the loss value, or `None` (model unchanged) when the loss is not finite
/// and the step must be skipped.
pub fn descend<M: Module>(
    model: M,
    loss: Tensor<1>,
    optim: &mut burn::optim::ModuleOptimizer,
    lr: f64,
    clip: f64,
) -> (M, Option<f64>) {
    let value = f64::from(loss.clone().into_scalar::<f32>());
    if !value.is_finite() {
        return (model, None);
    }
    let mut grads = GradientsParams::from_grads(loss.backward(), &model);
    clip_global_norm(&model, &mut grads, clip);
    (optim.step(lr, model, grads), Some(value))
}

/// Clips the gradients' global L2 norm to `max` (like `torch.nn.utils.clip_grad_norm_`;
/// Burn's own clipping is per tensor). Returns the norm before clipping.
pub fn clip_global_norm<M: Module>(model: &M, grads: &mut GradientsParams, max: f64) -> f64 {
    let mut v = SquaredNorm { grads, total: 0.0 };
    model.visit(&mut v);
    let norm = v.total.sqrt();
    if max > 0.0 && norm > max {
        model.visit(&mut Scale {
            grads,
            factor: (max / (norm + 1e-6)) as f32,
        });
    }
    norm
}

struct CollectIds(Vec<u64>);

impl ModuleVisitor for CollectIds {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        self.0.push(p.id.val());
    }
}

/// Parameter ids in visiting order (the optimiser's state is keyed by them).
pub fn param_ids<M: Module>(model: &M) -> Vec<u64> {
    let mut c = CollectIds(Vec::new());
    model.visit(&mut c);
    c.0
}

struct AssignIds {
    ids: Vec<u64>,
    next: usize,
}

impl ModuleMapper for AssignIds {
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(&id) = self.ids.get(self.next) else {
            return p;
        };
        self.next += 1;
        let require_grad = p.is_require_grad();
        Param::initialized(ParamId::from(id), p.val()).set_require_grad(require_grad)
    }
}

/// Gives a freshly loaded model the parameter ids it had when its optimiser state was saved.
pub fn assign_param_ids<M: Module>(model: M, ids: Vec<u64>) -> M {
    model.map(&mut AssignIds { ids, next: 0 })
}
