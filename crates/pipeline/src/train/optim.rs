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
    let part = super::parts::backward(&model, loss);
    super::parts::step(model, vec![part], optim, lr, clip)
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::AdamWConfig;

    #[test]
    fn cosine_schedule_follows_torch_cosine_annealing() {
        // CosineAnnealingLR(T_max = 100) stepped per epoch: base·(1 + cos(π·e/100))/2.
        assert_eq!(cosine_lr(1e-3, 0, 100), 1e-3);
        assert!((cosine_lr(1e-3, 50, 100) - 5e-4).abs() < 1e-15);
        assert!((cosine_lr(1e-3, 25, 100) - 1e-3 * (1.0 + 0.5f64.sqrt()) / 2.0).abs() < 1e-15);
        let last = cosine_lr(1e-3, 99, 100);
        assert!(last > 0.0 && last < 3e-7, "last epoch {last}");
        // Falls every epoch.
        assert!((1..100).all(|e| cosine_lr(1.0, e, 100) < cosine_lr(1.0, e - 1, 100)));
    }

    /// A layer whose weight and bias gradients differ in size, for clipping.
    fn layer(device: &Device) -> (Linear, Tensor<1>) {
        device.seed(1);
        let lin = LinearConfig::new(3, 2).init(device);
        let x = Tensor::<2>::from_data(TensorData::new(vec![3.0f32, -2.0, 5.0], [1, 3]), device);
        let loss = lin.forward(x).sum().mul_scalar(4.0);
        (lin, loss)
    }

    fn grad_values<const D: usize>(g: &GradientsParams, p: &Param<Tensor<D>>) -> Vec<f32> {
        g.get::<D>(p.id)
            .expect("gradient")
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("f32")
    }

    #[test]
    fn clipping_scales_every_gradient_by_one_global_factor() {
        let device = Device::flex().autodiff();
        let (lin, loss) = layer(&device);
        let bias = lin.bias.clone().expect("bias");
        let mut grads = GradientsParams::from_grads(loss.backward(), &lin);
        let (w0, b0) = (grad_values(&grads, &lin.weight), grad_values(&grads, &bias));
        // d(4·Σ(xW + b))/dW = 4x per output, /db = 4: norms sqrt(2·16·38) and sqrt(2·16).
        let norm = ((w0.iter().chain(&b0))
            .map(|v| f64::from(*v).powi(2))
            .sum::<f64>())
        .sqrt();
        assert!(
            (norm - (16.0 * 2.0 * 39.0f64).sqrt()).abs() < 1e-3,
            "norm {norm}"
        );
        let reported = clip_global_norm(&lin, &mut grads, 1.0);
        assert!((reported - norm).abs() < 1e-3);
        let (w1, b1) = (grad_values(&grads, &lin.weight), grad_values(&grads, &bias));
        let factor = 1.0 / (norm + 1e-6);
        for (before, after) in w0.iter().chain(&b0).zip(w1.iter().chain(&b1)) {
            let want = f64::from(*before) * factor;
            assert!((f64::from(*after) - want).abs() < 1e-6, "{after} vs {want}");
        }
        // Below the limit nothing changes.
        let (lin, loss) = layer(&device);
        let mut grads = GradientsParams::from_grads(loss.backward(), &lin);
        let before = grad_values(&grads, &lin.weight);
        clip_global_norm(&lin, &mut grads, 1e6);
        assert_eq!(grad_values(&grads, &lin.weight), before);
    }

    #[test]
    fn a_non_finite_loss_skips_the_step_and_keeps_the_model() {
        let device = Device::flex().autodiff();
        let (lin, loss) = layer(&device);
        let weights = |l: &Linear| {
            l.weight
                .val()
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .expect("f32")
        };
        let before = weights(&lin);
        let mut optim = AdamWConfig::new().init();
        let nan = loss.mul_scalar(f32::NAN);
        let (kept, value) = descend(lin, nan, &mut optim, 1e-2, 1.0);
        assert_eq!(value, None);
        assert_eq!(weights(&kept), before, "the model is unchanged");
        let (lin, loss) = layer(&device);
        let (moved, value) = descend(lin, loss, &mut optim, 1e-2, 1.0);
        assert!(value.is_some_and(f64::is_finite));
        assert_ne!(weights(&moved), before, "a finite loss takes a step");
    }
}
