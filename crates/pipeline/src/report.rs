//! Training report images: loss curves, codebook usage heatmap, mel spectrogram previews.
//!
//! Charts are drawn with plotters into an RGB buffer and written as PNG here (zlib via
//! flate2, CRC-32 via crc32fast), so no image codec or system font library is needed; the
//! labels use a bundled ASCII subset of DejaVu Sans.

use std::io::Write;
use std::path::Path;
use std::sync::Once;

use anyhow::Context;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::fsutil::atomic_write;

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans-ascii.ttf");
const FONT_FAMILY: &str = "sans-serif";

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bundled font parses (a test renders a chart); if it ever did not, charts would
        // fail with a drawing error, which callers report as a warning.
        let _ = plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, FONT);
    });
}

/// Encodes 8-bit RGB pixels (`width × height × 3`, row-major) as a PNG file.
pub fn encode_png(width: u32, height: u32, rgb: &[u8]) -> anyhow::Result<Vec<u8>> {
    let (w, h) = (width as usize, height as usize);
    anyhow::ensure!(
        rgb.len() == w * h * 3,
        "pixel buffer does not match the size"
    );
    let mut raw = Vec::with_capacity((w * 3 + 1) * h);
    for row in rgb.chunks_exact(w * 3) {
        raw.push(0); // filter type: none
        raw.extend_from_slice(row);
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw)?;
    let idat = z.finish()?;
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8; 4], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.finalize().to_be_bytes());
    };
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit, truecolour, deflate, no filter, no interlace
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &idat);
    chunk(b"IEND", &[]);
    Ok(out)
}

/// Draws with `draw` on a white `width × height` canvas and writes it to `path` as PNG.
fn render(
    path: &Path,
    (width, height): (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend, plotters::coord::Shift>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    register_font();
    let mut rgb = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        draw(&root)?;
        root.present()
            .map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))?;
    }
    atomic_write(path, &encode_png(width, height, &rgb)?)
        .with_context(|| format!("writing {}", path.display()))
}

fn plot_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("plotting: {e}")
}

/// One epoch on a loss chart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossPoint {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    /// A new best validation loss (the last such epoch is the kept one).
    pub is_best: bool,
}

/// Training and validation loss per epoch of one stage, the kept (best) epoch marked.
pub fn loss_curves(path: &Path, title: &str, history: &[LossPoint]) -> anyhow::Result<()> {
    if history.is_empty() {
        return Ok(());
    }
    let finite = |v: f64| v.is_finite().then_some(v);
    let values: Vec<f64> = history
        .iter()
        .flat_map(|r| [finite(r.train_loss), finite(r.val_loss)])
        .flatten()
        .collect();
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
    } else {
        (0.0, 1.0)
    };
    let last = history.last().map_or(1, |r| r.epoch).max(2) as f64;
    let best = history.iter().rfind(|r| r.is_best);
    render(path, (900, 540), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT_FAMILY, 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(1.0..last, lo..hi)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_desc("loss")
            .label_style((FONT_FAMILY, 14))
            .draw()
            .map_err(plot_err)?;
        let series = |pick: fn(&LossPoint) -> f64| -> Vec<(f64, f64)> {
            history
                .iter()
                .filter_map(|r| finite(pick(r)).map(|v| (r.epoch as f64, v)))
                .collect()
        };
        chart
            .draw_series(LineSeries::new(
                series(|r| r.train_loss),
                BLUE.stroke_width(2),
            ))
            .map_err(plot_err)?
            .label("train")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
        chart
            .draw_series(LineSeries::new(series(|r| r.val_loss), RED.stroke_width(2)))
            .map_err(plot_err)?
            .label("validation")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
        if let Some(b) = best.filter(|b| b.val_loss.is_finite()) {
            chart
                .draw_series(std::iter::once(Circle::new(
                    (b.epoch as f64, b.val_loss),
                    6,
                    BLACK.stroke_width(2),
                )))
                .map_err(plot_err)?
                .label(format!("kept: epoch {}", b.epoch))
                .legend(|(x, y)| Circle::new((x + 10, y), 5, BLACK.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .label_font((FONT_FAMILY, 14))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(plot_err)?;
        Ok(())
    })
}

/// A perceptually ordered dark-blue → yellow colour for `t` in [0, 1] (viridis-like).
fn colour(t: f64) -> RGBColor {
    const STOPS: [(f64, f64, f64); 5] = [
        (68.0, 1.0, 84.0),
        (59.0, 82.0, 139.0),
        (33.0, 145.0, 140.0),
        (94.0, 201.0, 98.0),
        (253.0, 231.0, 37.0),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    } * 4.0;
    let i = (t.floor() as usize).min(3);
    let f = t - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |x: f64, y: f64| (x + (y - x) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// How often each code of each level was used (`counts[level][code]`), log-scaled.
pub fn codebook_heatmap(path: &Path, title: &str, counts: &[Vec<u64>]) -> anyhow::Result<()> {
    let levels = counts.len();
    let k = counts.first().map_or(0, Vec::len);
    if levels == 0 || k == 0 {
        return Ok(());
    }
    let max = counts.iter().flatten().copied().max().unwrap_or(0).max(1) as f64;
    render(path, (1000, 140 + 70 * levels as u32), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT_FAMILY, 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0..k, 0..levels)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("code")
            .y_desc("level")
            .y_labels(levels)
            // Each level's row starts at its label.
            .y_label_formatter(&|l| {
                if *l < levels {
                    format!("{l}")
                } else {
                    String::new()
                }
            })
            .label_style((FONT_FAMILY, 14))
            .draw()
            .map_err(plot_err)?;
        chart
            .draw_series(counts.iter().enumerate().flat_map(|(l, row)| {
                row.iter().enumerate().map(move |(c, &n)| {
                    // Unused codes are drawn white, so dead codes stand out.
                    let fill = if n == 0 {
                        WHITE
                    } else {
                        colour((n as f64).ln_1p() / max.ln_1p())
                    };
                    Rectangle::new([(c, l), (c + 1, l + 1)], fill.filled())
                })
            }))
            .map_err(plot_err)?;
        Ok(())
    })
}

/// Log-mel spectrograms `[n_mels][frames]` side by side (e.g. original and reconstruction),
/// each titled, on one colour scale.
pub fn mel_panels(path: &Path, panels: &[(&str, &[f32])], n_mels: usize) -> anyhow::Result<()> {
    if panels.is_empty() || n_mels == 0 {
        return Ok(());
    }
    let frames = panels[0].1.len() / n_mels;
    let max = panels
        .iter()
        .flat_map(|(_, m)| m.iter())
        .copied()
        .fold(0.0f32, f32::max)
        .max(1e-6);
    let scale = 3u32;
    let (pw, ph) = (frames as u32 * scale, n_mels as u32 * scale);
    let width = pw * panels.len() as u32 + 20 * (panels.len() as u32 + 1);
    render(path, (width, ph + 60), |root| {
        for (i, (title, mel)) in panels.iter().enumerate() {
            let x0 = 20 + i as i32 * (pw as i32 + 20);
            root.draw(&Text::new(
                title.to_string(),
                (x0, 12),
                (FONT_FAMILY, 16).into_font(),
            ))
            .map_err(plot_err)?;
            for m in 0..n_mels {
                for t in 0..frames.min(mel.len() / n_mels) {
                    let v = f64::from(mel[m * frames + t] / max);
                    // Low mel bands at the bottom.
                    let y = 40 + ((n_mels - 1 - m) as u32 * scale) as i32;
                    let x = x0 + (t as u32 * scale) as i32;
                    root.draw(&Rectangle::new(
                        [(x, y), (x + scale as i32, y + scale as i32)],
                        colour(v).filled(),
                    ))
                    .map_err(plot_err)?;
                }
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minimal PNG reader for the tests: checks the signature, every chunk's CRC, and
    /// returns (width, height, RGB pixels).
    fn decode(png: &[u8]) -> (u32, u32, Vec<u8>) {
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let (mut pos, mut w, mut h, mut idat) = (8, 0, 0, Vec::new());
        while pos < png.len() {
            let len = u32::from_be_bytes(png[pos..pos + 4].try_into().expect("4 bytes")) as usize;
            let kind = &png[pos + 4..pos + 8];
            let data = &png[pos + 8..pos + 8 + len];
            let crc = u32::from_be_bytes(
                png[pos + 8 + len..pos + 12 + len]
                    .try_into()
                    .expect("4 bytes"),
            );
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(kind);
            hasher.update(data);
            assert_eq!(hasher.finalize(), crc, "chunk CRC");
            match kind {
                b"IHDR" => {
                    w = u32::from_be_bytes(data[0..4].try_into().expect("4 bytes"));
                    h = u32::from_be_bytes(data[4..8].try_into().expect("4 bytes"));
                }
                b"IDAT" => idat.extend_from_slice(data),
                _ => {}
            }
            pos += 12 + len;
        }
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&idat[..]), &mut raw)
            .expect("zlib");
        let rgb = raw
            .chunks_exact(w as usize * 3 + 1)
            .flat_map(|row| {
                assert_eq!(row[0], 0, "filter none");
                row[1..].to_vec()
            })
            .collect();
        (w, h, rgb)
    }

    #[test]
    fn png_round_trips() {
        let rgb: Vec<u8> = (0..4 * 3 * 3).map(|i| (i * 7) as u8).collect();
        let (w, h, back) = decode(&encode_png(4, 3, &rgb).expect("encodes"));
        assert_eq!((w, h), (4, 3));
        assert_eq!(back, rgb);
        let err = encode_png(4, 4, &rgb).expect_err("size mismatch is an error");
        assert!(err.to_string().contains("does not match the size"), "{err}");
    }

    fn report(epoch: usize, train: f64, val: f64, best: bool) -> LossPoint {
        LossPoint {
            epoch,
            train_loss: train,
            val_loss: val,
            is_best: best,
        }
    }

    #[test]
    fn charts_render_with_the_bundled_font() {
        let dir = tempfile::tempdir().expect("temp dir");
        let history = vec![
            report(1, 3.0, 2.5, true),
            report(2, 2.0, f64::NAN, false),
            report(3, 1.5, 2.0, true),
        ];
        let loss = dir.path().join("loss.png");
        loss_curves(&loss, "VQ-VAE loss", &history).expect("loss chart");
        let (w, h, rgb) = decode(&std::fs::read(&loss).expect("file"));
        assert_eq!((w, h), (900, 540));
        // Both curves were drawn: pure-ish blue and red pixels exist.
        let has = |want: (u8, u8, u8)| rgb.chunks_exact(3).any(|p| (p[0], p[1], p[2]) == want);
        assert!(has((0, 0, 255)) && has((255, 0, 0)));

        let heat = dir.path().join("codes.png");
        let counts = vec![vec![0, 1, 10, 100], vec![5, 0, 0, 0]];
        codebook_heatmap(&heat, "codebook usage", &counts).expect("heatmap");
        let (_, h, _) = decode(&std::fs::read(&heat).expect("file"));
        assert_eq!(h, 140 + 70 * 2);

        let mel = dir.path().join("mel.png");
        let a: Vec<f32> = (0..8 * 5).map(|i| i as f32 / 40.0).collect();
        mel_panels(&mel, &[("original", &a), ("reconstruction", &a)], 8).expect("mel");
        let (w, h, _) = decode(&std::fs::read(&mel).expect("file"));
        assert_eq!((w, h), (2 * 15 + 60, 24 + 60));
    }
}
