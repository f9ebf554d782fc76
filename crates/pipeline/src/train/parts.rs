//! Training steps split into parts that run concurrently on a CPU.
//!
//! Burn's CPU backends run matrix products on every core but most other kernels
//! (element-wise arithmetic, layout copies, autodiff bookkeeping) on the calling thread, so a
//! single forward/backward pass keeps a 2-core machine about 1.3 cores busy. Cutting each
//! batch into parts whose passes run on their own threads fills the idle core; the parts'
//! gradients are summed, so a step still follows the whole batch's loss.
//!
//! Determinism: the number of parts is fixed (not the machine's core count), each part
//! draws its random numbers from its own stream, gradients are summed in part order, and
//! batch-norm running statistics are averaged over the parts once per step.

use burn::module::{ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::optim::{clip_global_norm, descend};

/// Parts a batch is cut into on a CPU backend. Fixed, not the machine's core count, so a
/// seed gives the same model on every CPU.
pub const HOST_PARTS: usize = 2;

/// Parts per batch for training on `device`: [`HOST_PARTS`] on a CPU, 1 on a GPU (whose
/// kernels already fill the device).
pub fn parts_for(device: &Device) -> usize {
    if crate::backend::computes_on_host(device) {
        HOST_PARTS
    } else {
        1
    }
}

/// Cuts `batch` into at most `parts` near-equal slices in order, none smaller than
/// `min_size` (unless the batch is), each with its own random stream drawn from `rng`, so no
/// result depends on which part finishes first.
pub fn split_batch<'a, T>(
    batch: &'a [T],
    parts: usize,
    min_size: usize,
    rng: &mut StdRng,
) -> Vec<(&'a [T], StdRng)> {
    let parts = parts.min(batch.len() / min_size.max(1)).max(1);
    let size = batch.len().div_ceil(parts).max(1);
    batch
        .chunks(size)
        .map(|part| (part, StdRng::seed_from_u64(rng.random())))
        .collect()
}

/// `f` over `items`, each on a different thread of the rayon pool; results in item order.
/// Distinct threads because Burn keeps batch-norm running statistics per thread: one thread
/// running two parts would fold the first part's update into the second, and the result
/// would depend on scheduling. Pool threads (not fresh ones) so the matrix products inside
/// each part share the same workers instead of competing with them.
pub fn on_threads<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let n = items.len();
    if n <= 1 {
        return items.into_iter().map(f).collect();
    }
    if rayon::current_num_threads() < n {
        // A pool smaller than the parts (a 1-core machine): fresh threads, same results.
        return std::thread::scope(|scope| {
            let f = &f;
            let handles: Vec<_> = items
                .into_iter()
                .map(|item| scope.spawn(move || f(item)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
    }
    let slots: Vec<std::sync::Mutex<Option<T>>> = items
        .into_iter()
        .map(|item| std::sync::Mutex::new(Some(item)))
        .collect();
    rayon::broadcast(|ctx| {
        let item = slots
            .get(ctx.index())
            .and_then(|slot| slot.lock().ok()?.take());
        item.map(&f)
    })
    .into_iter()
    .flatten()
    .collect()
}

/// Fresh autodiff leaves for every trainable parameter (same ids, shared data). Burn keeps
/// the operations of tensors that share a leaf in one locked graph, so without this the
/// parts' backward passes would queue behind one another.
struct Fork;

impl ModuleMapper for Fork {
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if !p.is_require_grad() {
            return p;
        }
        let id = p.id;
        Param::initialized(id, p.val().detach().require_grad())
    }
}

/// A copy of `model` whose gradients are computed apart from every other replica's.
/// Buffers (batch-norm statistics, codebooks) stay shared with `model`. Initialises lazy
/// parameters: call it from one thread.
pub fn replica<M: Module>(model: &M) -> M {
    model.clone().map(&mut Fork)
}

/// Adds the gradients of `other` into `into`.
struct Sum<'a> {
    into: &'a mut GradientsParams,
    other: GradientsParams,
}

impl ModuleVisitor for Sum<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let g = match (self.into.remove::<D>(p.id), self.other.remove::<D>(p.id)) {
            (Some(a), Some(b)) => a.add(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return,
        };
        self.into.register::<D>(p.id, g);
    }
}

/// One part's loss value and, when it is finite, its gradients.
pub struct PartGrads {
    value: f64,
    grads: Option<GradientsParams>,
}

/// Backward pass of one part's `loss` through `replica`.
pub fn backward<M: Module>(replica: &M, loss: Tensor<1>) -> PartGrads {
    let value = f64::from(loss.clone().into_scalar::<f32>());
    let grads = value
        .is_finite()
        .then(|| GradientsParams::from_grads(loss.backward(), replica));
    PartGrads { value, grads }
}

/// Sums the parts' gradients, clips their global norm and takes one optimiser step. Returns
/// the model and the summed loss, or `None` (model unchanged) when a part's loss is not
/// finite and the step must be skipped. Batch-norm statistics the parts updated are merged.
pub fn step<M: Module>(
    model: M,
    parts: Vec<PartGrads>,
    optim: &mut burn::optim::ModuleOptimizer,
    lr: f64,
    clip: f64,
) -> (M, Option<f64>) {
    // `valid` averages each running statistic over the threads that updated it this step.
    drop(model.valid());
    let (mut total, mut summed) = (0.0, None::<GradientsParams>);
    for part in parts {
        let Some(grads) = part.grads else {
            return (model, None);
        };
        total += part.value;
        summed = Some(match summed {
            None => grads,
            Some(mut into) => {
                model.visit(&mut Sum {
                    into: &mut into,
                    other: grads,
                });
                into
            }
        });
    }
    let Some(mut grads) = summed else {
        return (model, None);
    };
    clip_global_norm(&model, &mut grads, clip);
    (optim.step(lr, model, grads), Some(total))
}

/// [`descend`] with the batch cut into `parts` (see the module notes): `loss_of` must weight
/// each part's loss so that the parts add up to the batch's loss. A single part runs as a
/// plain step. `Err` when a part's loss cannot be computed.
pub fn descend_parts<M, P, F>(
    model: M,
    parts: Vec<P>,
    loss_of: F,
    optim: &mut burn::optim::ModuleOptimizer,
    lr: f64,
    clip: f64,
) -> anyhow::Result<(M, Option<f64>)>
where
    M: Module + Sync,
    P: Send,
    F: Fn(&M, P) -> anyhow::Result<Tensor<1>> + Sync,
{
    if parts.len() <= 1 {
        let Some(part) = parts.into_iter().next() else {
            return Ok((model, None));
        };
        let loss = loss_of(&model, part)?;
        return Ok(descend(model, loss, optim, lr, clip));
    }
    // Replicas made here, in order: forking initialises lazy parameters from the device's
    // seeded generator, which concurrent threads would draw from in any order.
    let jobs: Vec<(M, P)> = parts.into_iter().map(|p| (replica(&model), p)).collect();
    let results = on_threads(jobs, |(r, part)| {
        loss_of(&r, part).map(|loss| backward(&r, loss))
    });
    let parts = results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    Ok(step(model, parts, optim, lr, clip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
    use burn::optim::AdamWConfig;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("f32")
    }

    /// Rows of a 4-sample regression batch (inputs, targets).
    fn batch() -> Vec<([f32; 3], [f32; 2])> {
        vec![
            ([1.0, -2.0, 0.5], [0.3, -1.0]),
            ([0.0, 4.0, -1.5], [2.0, 0.5]),
            ([-3.0, 1.0, 2.0], [-0.7, 1.2]),
            ([2.5, 0.5, -0.5], [1.1, 0.0]),
        ]
    }

    /// Mean squared error of `rows`, weighted by their share of a batch of `of` rows.
    fn loss(lin: &Linear, rows: &[([f32; 3], [f32; 2])], of: usize) -> Tensor<1> {
        let device = lin.weight.lazy_device();
        let x: Vec<f32> = rows.iter().flat_map(|r| r.0).collect();
        let y: Vec<f32> = rows.iter().flat_map(|r| r.1).collect();
        let x = Tensor::<2>::from_data(TensorData::new(x, [rows.len(), 3]), &device);
        let y = Tensor::<2>::from_data(TensorData::new(y, [rows.len(), 2]), &device);
        (lin.forward(x) - y)
            .powi_scalar(2)
            .mean()
            .mul_scalar(rows.len() as f32 / of as f32)
    }

    #[test]
    fn a_step_in_parts_follows_the_whole_batch() {
        let device = Device::flex().autodiff();
        let rows = batch();
        let fresh = || {
            let mut lin = LinearConfig::new(3, 2).init(&device);
            let w = vec![0.2f32, -0.4, 0.1, 0.7, -0.3, 0.5];
            lin.weight = Param::from_tensor(Tensor::from_data(TensorData::new(w, [3, 2]), &device));
            lin.bias = Some(Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![0.05f32, -0.1], [2]),
                &device,
            )));
            lin
        };
        let mut optim = AdamWConfig::new().init();
        let start = fresh();
        let whole_loss = loss(&start, &rows, rows.len());
        let (whole, whole_value) = descend(start, whole_loss, &mut optim, 1e-2, 0.5);
        let mut optim = AdamWConfig::new().init();
        let mut rng = StdRng::seed_from_u64(1);
        let parts = split_batch(&rows, HOST_PARTS, 1, &mut rng);
        assert_eq!(parts.len(), 2);
        let (split, split_value) = descend_parts(
            fresh(),
            parts,
            |lin: &Linear, (part, _)| Ok(loss(lin, part, rows.len())),
            &mut optim,
            1e-2,
            0.5,
        )
        .expect("step");
        let (a, b) = (whole_value.expect("finite"), split_value.expect("finite"));
        assert!((a - b).abs() < 1e-6, "loss {a} vs {b}");
        for (x, y) in values(whole.weight.val())
            .iter()
            .zip(values(split.weight.val()))
        {
            assert!((x - y).abs() < 1e-6, "weight {x} vs {y}");
        }
        assert_ne!(
            values(split.weight.val()),
            values(fresh().weight.val()),
            "the step moved the weights"
        );
        // A part whose loss is not finite skips the step for the whole batch.
        let parts = split_batch(&rows, HOST_PARTS, 1, &mut rng);
        let (kept, value) = descend_parts(
            fresh(),
            parts,
            |lin: &Linear, (part, _): (&[_], StdRng)| {
                let l = loss(lin, part, rows.len());
                Ok(if part[0].0[0] == 0.0 {
                    l
                } else {
                    l.mul_scalar(f32::NAN)
                })
            },
            &mut optim,
            1e-2,
            0.5,
        )
        .expect("step");
        assert_eq!(value, None);
        assert_eq!(values(kept.weight.val()), values(fresh().weight.val()));
    }

    #[test]
    fn batches_split_in_order_with_their_own_random_streams() {
        let items: Vec<usize> = (0..8).collect();
        let mut rng = StdRng::seed_from_u64(5);
        let parts = split_batch(&items, 2, 1, &mut rng);
        let slices: Vec<&[usize]> = parts.iter().map(|p| p.0).collect();
        assert_eq!(slices, [&items[..4], &items[4..]]);
        let mut streams: Vec<u64> = parts.into_iter().map(|(_, mut r)| r.random()).collect();
        streams.dedup();
        assert_eq!(streams.len(), 2, "each part draws its own numbers");
        let odd: Vec<usize> = split_batch(&items[..3], 2, 1, &mut rng)
            .iter()
            .map(|p| p.0.len())
            .collect();
        assert_eq!(odd, [2, 1]);
        assert_eq!(split_batch(&items[..1], 2, 1, &mut rng).len(), 1);
        assert_eq!(split_batch(&items, 1, 1, &mut rng).len(), 1);
        // Parts no smaller than asked: 8 items in parts of at least 4 → 2; 6 → 1.
        assert_eq!(split_batch(&items, 2, 4, &mut rng).len(), 2);
        assert_eq!(split_batch(&items[..6], 2, 4, &mut rng).len(), 1);
        assert_eq!(on_threads(vec![3, 1, 2], |x| x * 10), [30, 10, 20]);
    }

    /// Batch-norm running statistics after one step in two parts: the mean of both parts'
    /// updates, however the threads were scheduled.
    #[test]
    fn batch_norm_statistics_average_the_parts_deterministically() {
        let device = Device::flex().autodiff();
        let run = || {
            let bn: BatchNorm = BatchNormConfig::new(1).with_momentum(0.5).init(&device);
            let parts: Vec<Vec<f32>> = vec![vec![1.0, 3.0], vec![10.0, 14.0]];
            let mut optim = AdamWConfig::new().init();
            let (bn, value) = descend_parts(
                bn,
                parts,
                |bn: &BatchNorm, x: Vec<f32>| {
                    let x = Tensor::<3>::from_data(TensorData::new(x, [2, 1, 1]), &device);
                    Ok(bn.forward(x).sum())
                },
                &mut optim,
                1e-3,
                0.0,
            )
            .expect("step");
            assert!(value.is_some());
            values(bn.valid().running_mean.value())
        };
        // Each part: 0.5·0 + 0.5·(its mean); the step keeps their average: (1 + 6) / 2.
        let first = run();
        assert_eq!(first, [3.5]);
        for _ in 0..5 {
            assert_eq!(run(), first);
        }
    }

    #[test]
    fn cpu_devices_train_in_parts_and_others_in_one() {
        assert_eq!(parts_for(&Device::flex()), HOST_PARTS);
        assert_eq!(parts_for(&Device::flex().autodiff()), HOST_PARTS);
        #[allow(deprecated)]
        let ndarray = Device::ndarray();
        assert_eq!(parts_for(&ndarray.autodiff()), HOST_PARTS);
    }
}
