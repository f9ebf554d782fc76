//! The order in which a code grid becomes the prior's token stream, and back.
//!
//! A VQ-VAE code grid has `rows` frequency rows, `steps` time steps and `levels` residual
//! levels; the VQ-VAE lists it in raster order (position `p = row·steps + step`, levels
//! interleaved: `codes[p·levels + level]`). The prior reads a flat token stream:
//!
//! * [`TokenOrder::Raster`] — the grid as the VQ-VAE lists it (the reference system's order:
//!   one 1 s grid per sequence, frequency-row major);
//! * [`TokenOrder::TimeMajor`] — one time step after another, each step's rows low to high
//!   with their levels in order. Consecutive grids of a file continue the same stream, so a
//!   window can cross a chunk boundary and generation can continue a sequence. Models
//!   trained by Distill use this order.
//!
//! Training, generation, evaluation and `encode`/`decode` all convert through this type.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::PriorError;

/// How a code grid is flattened into the prior's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenOrder {
    Raster,
    TimeMajor,
}

/// The dimensions of a code grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GridShape {
    /// Frequency rows (`H`).
    pub rows: usize,
    /// Time steps (`W`).
    pub steps: usize,
    /// Residual levels (`Q`).
    pub levels: usize,
}

impl GridShape {
    /// Tokens per time step: every row and level of one column of the grid.
    pub fn tokens_per_step(&self) -> usize {
        self.rows * self.levels
    }

    /// Codes in the whole grid.
    pub fn len(&self) -> usize {
        self.rows * self.steps * self.levels
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same rows and levels over `steps` time steps.
    pub fn with_steps(self, steps: usize) -> Self {
        Self { steps, ..self }
    }
}

impl TokenOrder {
    /// The name stored in model files and sidecars.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Raster => "raster",
            Self::TimeMajor => "time_major",
        }
    }

    /// Tokens of a raster-order grid (`codes.len() == shape.len()`).
    pub fn tokens(self, codes: &[i64], shape: GridShape) -> Result<Vec<i64>, PriorError> {
        check(codes.len(), shape)?;
        Ok(match self {
            Self::Raster => codes.to_vec(),
            Self::TimeMajor => {
                let GridShape {
                    rows,
                    steps,
                    levels,
                } = shape;
                let mut out = Vec::with_capacity(codes.len());
                for w in 0..steps {
                    for h in 0..rows {
                        let p = h * steps + w;
                        out.extend_from_slice(&codes[p * levels..(p + 1) * levels]);
                    }
                }
                out
            }
        })
    }

    /// The raster-order grid of a token stream: the exact inverse of [`Self::tokens`].
    pub fn grid(self, tokens: &[i64], shape: GridShape) -> Result<Vec<i64>, PriorError> {
        check(tokens.len(), shape)?;
        Ok(match self {
            Self::Raster => tokens.to_vec(),
            Self::TimeMajor => {
                let GridShape {
                    rows,
                    steps,
                    levels,
                } = shape;
                let mut out = vec![0i64; tokens.len()];
                for w in 0..steps {
                    for h in 0..rows {
                        let (p, s) = (h * steps + w, w * rows + h);
                        out[p * levels..(p + 1) * levels]
                            .copy_from_slice(&tokens[s * levels..(s + 1) * levels]);
                    }
                }
                out
            }
        })
    }

    /// One stream of several consecutive grids of the same rows and levels (a file's 1 s
    /// chunks): their tokens back to back.
    pub fn stream(self, grids: &[&[i64]], shape: GridShape) -> Result<Vec<i64>, PriorError> {
        let mut out = Vec::with_capacity(grids.len() * shape.len());
        for g in grids {
            out.extend(self.tokens(g, shape)?);
        }
        Ok(out)
    }
}

impl std::fmt::Display for TokenOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn check(len: usize, shape: GridShape) -> Result<(), PriorError> {
    if len != shape.len() {
        return Err(PriorError::InvalidShape(format!(
            "{len} codes do not fill a grid of {} rows x {} steps x {} levels",
            shape.rows, shape.steps, shape.levels
        )));
    }
    Ok(())
}

/// `[B, S, Q]` codes → `[B, S·Q]` tokens, position-major with levels interleaved.
pub fn flatten_codes(codes: Tensor<3, Int>) -> Tensor<2, Int> {
    let [b, s, q] = codes.dims();
    codes.reshape([b, s * q])
}

/// `[B, S·Q]` tokens → `[B, S, Q]` codes; the exact inverse of [`flatten_codes`].
pub fn unflatten_codes(
    tokens: Tensor<2, Int>,
    num_quantizers: usize,
) -> Result<Tensor<3, Int>, PriorError> {
    let [b, t] = tokens.dims();
    if num_quantizers == 0 || !t.is_multiple_of(num_quantizers) {
        return Err(PriorError::NotMultiple {
            len: t,
            levels: num_quantizers,
        });
    }
    Ok(tokens.reshape([b, t / num_quantizers, num_quantizers]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    #[test]
    fn both_orders_round_trip_on_random_shapes() {
        let mut rng = StdRng::seed_from_u64(11);
        for _ in 0..50 {
            let shape = GridShape {
                rows: rng.random_range(1..10),
                steps: rng.random_range(1..12),
                levels: rng.random_range(1..5),
            };
            let codes: Vec<i64> = (0..shape.len()).map(|_| rng.random_range(0..512)).collect();
            for order in [TokenOrder::Raster, TokenOrder::TimeMajor] {
                let tokens = order.tokens(&codes, shape).expect("fits");
                assert_eq!(order.grid(&tokens, shape).expect("fits"), codes, "{order}");
            }
        }
    }

    #[test]
    fn time_major_lists_one_column_after_another() {
        // 2 rows x 3 steps x 2 levels; code = 100·row + 10·step + level.
        let shape = GridShape {
            rows: 2,
            steps: 3,
            levels: 2,
        };
        let mut codes = vec![0i64; shape.len()];
        for h in 0..2 {
            for w in 0..3 {
                for l in 0..2 {
                    codes[(h * 3 + w) * 2 + l] = (100 * h + 10 * w + l) as i64;
                }
            }
        }
        let tokens = TokenOrder::TimeMajor.tokens(&codes, shape).expect("fits");
        assert_eq!(tokens, [0, 1, 100, 101, 10, 11, 110, 111, 20, 21, 120, 121]);
        // A transposed decoding (steps read as rows) would not give the grid back.
        let wrong = GridShape {
            rows: 3,
            steps: 2,
            levels: 2,
        };
        assert_ne!(
            TokenOrder::TimeMajor
                .grid(&tokens, wrong)
                .expect("same size"),
            codes
        );
        assert!(TokenOrder::Raster.tokens(&codes[1..], shape).is_err());
    }

    #[test]
    fn names_are_the_model_file_strings() {
        assert_eq!(
            serde_json::to_string(&TokenOrder::TimeMajor).expect("json"),
            "\"time_major\""
        );
        assert_eq!(TokenOrder::Raster.as_str(), "raster");
    }
}
