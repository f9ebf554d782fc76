//! Float32 arithmetic as PyTorch's vectorised CPU kernels do it, where the reference's
//! numbers depend on the last bits.
//!
//! `10 ** x` on a float tensor runs SLEEF's `powf` (u10): `exp(y·log x)` evaluated in
//! double-float (pairs of f32) arithmetic with fused multiply-adds. It is accurate to 1 ulp
//! but not correctly rounded, and the mel filter edges inherit the difference; this is our
//! own implementation of that algorithm (positive finite bases only).

// The constants are exact decimal expansions of the algorithm's f32 values.
#![allow(clippy::excessive_precision)]

/// A value as an unevaluated sum `hi + lo` of two floats.
#[derive(Clone, Copy)]
struct Df {
    hi: f32,
    lo: f32,
}

fn df(hi: f32, lo: f32) -> Df {
    Df { hi, lo }
}

/// Exact sum of two floats.
fn add2_ff(x: f32, y: f32) -> Df {
    let s = x + y;
    let v = s - x;
    df(s, (x - (s - v)) + (y - v))
}

fn add2_df_f(x: Df, y: f32) -> Df {
    let s = x.hi + y;
    let v = s - x.hi;
    df(s, (x.hi - (s - v)) + (y - v) + x.lo)
}

fn add2_df_df(x: Df, y: Df) -> Df {
    let s = x.hi + y.hi;
    let v = s - x.hi;
    df(s, (x.hi - (s - v)) + (y.hi - v) + (x.lo + y.lo))
}

/// Fast sum, valid when `|x| ≥ |y|`.
fn add_df_df(x: Df, y: Df) -> Df {
    let s = x.hi + y.hi;
    df(s, x.hi - s + y.hi + x.lo + y.lo)
}

fn add_f_df(x: f32, y: Df) -> Df {
    let s = x + y.hi;
    df(s, x - s + y.hi + y.lo)
}

fn normalize(x: Df) -> Df {
    let s = x.hi + x.lo;
    df(s, x.hi - s + x.lo)
}

fn scale(x: Df, s: f32) -> Df {
    df(x.hi * s, x.lo * s)
}

fn mul_df_f(x: Df, y: f32) -> Df {
    let s = x.hi * y;
    df(s, x.lo.mul_add(y, x.hi.mul_add(y, -s)))
}

fn mul_df_df(x: Df, y: Df) -> Df {
    let s = x.hi * y.hi;
    df(
        s,
        x.hi.mul_add(y.lo, x.lo.mul_add(y.hi, x.hi.mul_add(y.hi, -s))),
    )
}

fn square(x: Df) -> Df {
    let s = x.hi * x.hi;
    df(s, (x.hi + x.hi).mul_add(x.lo, x.hi.mul_add(x.hi, -s)))
}

fn div(n: Df, d: Df) -> Df {
    let t = 1.0 / d.hi;
    let s = n.hi * t;
    let u = t.mul_add(n.hi, -s);
    let v = (-d.lo).mul_add(t, (-d.hi).mul_add(t, 1.0));
    df(s, s.mul_add(v, n.lo.mul_add(t, u)))
}

/// `floor(log2(x))` of a positive normal float, from its exponent bits.
fn ilogb(x: f32) -> i32 {
    ((x.to_bits() >> 23) & 0xff) as i32 - 127
}

/// Natural log of a positive normal float as a double-float.
fn log_df(d: f32) -> Df {
    let e = ilogb(d * (1.0f32 / 0.75f32));
    let m = d * f32::from_bits(((127 - e) as u32) << 23);
    let x = div(add2_ff(-1.0, m), add2_ff(1.0, m));
    let x2 = square(x);
    let t = 0.240_320_354_700_088_500_976_562_f32
        .mul_add(x2.hi, 0.285_112_679_004_669_189_453_125)
        .mul_add(x2.hi, 0.400_007_992_982_864_379_882_812);
    let c = df(
        0.666_666_626_930_236_816_406_25,
        3.691_838_612_596_143_320_843_11e-9,
    );
    let s = mul_df_f(
        df(0.693_147_182_464_599_609_38, -1.904_654_323_148_236_017e-9),
        e as f32,
    );
    let s = add_df_df(s, scale(x, 2.0));
    add_df_df(
        s,
        mul_df_df(mul_df_df(x2, x), add2_df_df(mul_df_f(x2, t), c)),
    )
}

/// `exp` of a double-float, rounded to float.
fn exp_df(d: Df) -> f32 {
    let q = ((d.hi + d.lo) * std::f32::consts::LOG2_E).round_ties_even();
    let s = add2_df_f(d, q * -0.693_145_751_953_125);
    let s = add2_df_f(s, q * -1.428_606_765_330_187_045e-6);
    let s = normalize(s);
    let u = 0.001_363_246_468_827_128_410_339_36_f32
        .mul_add(s.hi, 0.008_365_969_173_610_210_418_701_17)
        .mul_add(s.hi, 0.041_671_082_377_433_776_855_468_8)
        .mul_add(s.hi, 0.166_665_524_244_308_471_679_688)
        .mul_add(s.hi, 0.499_999_850_988_388_061_523_438);
    let t = add_df_df(s, mul_df_f(square(s), u));
    let t = add_f_df(1.0, t);
    if d.hi < -104.0 {
        return 0.0;
    }
    (t.hi + t.lo) * 2f32.powi(q as i32)
}

/// `x^y` for positive normal `x`, bit-identical to SLEEF's vectorised `powf` (u10).
pub fn powf(x: f32, y: f32) -> f32 {
    exp_df(mul_df_f(log_df(x), y))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_one_ulp_of_the_exact_power() {
        for i in 0..2000 {
            let y = i as f32 * 0.000_75;
            let got = powf(10.0, y);
            let exact = 10f64.powf(f64::from(y));
            let ulp = f64::from(f32::EPSILON) * exact;
            assert!(
                (f64::from(got) - exact).abs() <= ulp,
                "10^{y}: {got} vs {exact}"
            );
        }
        assert_eq!(powf(10.0, 0.0), 1.0);
        assert_eq!(powf(2.0, 10.0), 1024.0);
    }
}
