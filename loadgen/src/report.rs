//! The comparison table (markdown) and the TTFT-percentile chart (SVG, plotters).

use plotters::prelude::*;

use crate::Summary;

/// A markdown table with one row per run.
pub fn table(runs: &[Summary]) -> String {
    let mut s = String::from(
        "| policy | requests | errors | TTFT p50 / p90 / p99 (ms) | TPOT p50 / p90 / p99 (ms) | E2E p50 / p90 / p99 (s) | output tok/s | goodput req/s | prefix-cache hit rate | servers per prefix | router CPU ms/req | share per endpoint |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in runs {
        let share: Vec<String> = r
            .share_per_endpoint
            .iter()
            .map(|(k, v)| format!("{k} {:.0}%", v * 100.0))
            .collect();
        s.push_str(&format!(
            "| {} | {} | {} | {:.0} / {:.0} / {:.0} | {:.1} / {:.1} / {:.1} | {:.2} / {:.2} / {:.2} | {:.0} | {:.1} | {} | {} | {} | {} |\n",
            r.label,
            r.requests,
            r.errors,
            r.ttft.p50 * 1e3,
            r.ttft.p90 * 1e3,
            r.ttft.p99 * 1e3,
            r.tpot.p50 * 1e3,
            r.tpot.p90 * 1e3,
            r.tpot.p99 * 1e3,
            r.e2e.p50,
            r.e2e.p90,
            r.e2e.p99,
            r.output_tokens_per_s,
            r.goodput_rps,
            r.prefix_cache_hit_rate
                .map_or("-".into(), |h| format!("{:.0}%", h * 100.0)),
            r.endpoints_per_prefix
                .map_or("-".into(), |n| format!("{n:.2}")),
            r.router_cpu_ms_per_request
                .map_or("-".into(), |c| format!("{c:.2}")),
            share.join(", "),
        ));
    }
    s
}

/// `text` split at spaces into lines of at most `width` characters (a longer word gets a line of
/// its own).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(l) if l.chars().count() + 1 + word.chars().count() <= width => {
                l.push(' ');
                l.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}

/// Grouped bars: TTFT p50 / p90 / p99 (ms) per run.
///
/// # Errors
/// Drawing or writing failures, as text.
pub fn chart(runs: &[Summary], path: &str) -> Result<(), String> {
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let max = runs.iter().map(|r| r.ttft.p99 * 1e3).fold(1.0, f64::max) * 1.3;
    let n = runs.len().max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Time to first token by routing policy (ms, lower is better)",
            ("sans-serif", 22),
        )
        .margin(20)
        .x_label_area_size(64)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..(n as f64), 0.0..max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("TTFT (ms)")
        .draw()
        .map_err(|e| e.to_string())?;
    // Each group's label under its bars, wrapped to the group's width (at most 3 lines), drawn
    // in pixels below the axis (chart coordinates outside the range are clamped to the edge).
    let per_line = (760 / n / 7).clamp(10, 40);
    for (i, r) in runs.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(i as f64 + 0.1, 0.0));
        for (j, line) in wrap(&r.label, per_line).into_iter().take(3).enumerate() {
            root.draw(&Text::new(
                line,
                (x, y + 8 + 15 * j as i32),
                ("sans-serif", 12).into_font(),
            ))
            .map_err(|e| e.to_string())?;
        }
    }
    let series = [
        ("p50", RGBColor(66, 133, 244)),
        ("p90", RGBColor(251, 188, 5)),
        ("p99", RGBColor(219, 68, 55)),
    ];
    for (k, &(name, color)) in series.iter().enumerate() {
        let bars = runs.iter().enumerate().map(|(i, r)| {
            let v = [r.ttft.p50, r.ttft.p90, r.ttft.p99][k] * 1e3;
            let x0 = i as f64 + 0.15 + 0.23 * k as f64;
            Rectangle::new([(x0, 0.0), (x0 + 0.2, v)], color.filled())
        });
        chart
            .draw_series(bars)
            .map_err(|e| e.to_string())?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperMiddle)
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn labels_wrap_at_spaces() {
        assert_eq!(
            wrap("Envoy + llm-d-router EPP (ext_proc)", 16),
            ["Envoy +", "llm-d-router EPP", "(ext_proc)"]
        );
        assert_eq!(wrap("short", 16), ["short"]);
        assert_eq!(wrap("", 16), Vec::<String>::new());
    }
}
