//! Merging of per-worker Prometheus text expositions into one exposition for the service.
//!
//! shardgate serves requests from several worker *processes* (prefork). Every worker installs
//! its own `metrics` recorder, so each one can only render its own share of the counters,
//! gauges and histograms; nothing is shared between the processes. A scrape of `/metrics` must
//! nevertheless describe the whole service, so the text rendered by every worker is collected
//! and merged here: samples of the same series (same metric name, same labels) are summed.
//!
//! Summing is the right operation for counters (requests served by the service = the sum over
//! workers), for gauges that measure a per-worker share (open connections, in-flight requests),
//! and for histograms: the bucket bounds come from the configuration and are fixed and identical
//! in every worker, so the `le` labels line up and the cumulative bucket counts, `_sum` and
//! `_count` add up exactly to the histogram a single process would have recorded. Summary
//! quantiles are the one exception, see [`merge_expositions`].
//!
//! The parser is deliberately small (std only, one pass per input): it understands the subset
//! of the text format that `metrics-exporter-prometheus` writes, plus timestamps, and skips any
//! line it cannot parse instead of failing the whole scrape.

use std::collections::HashMap;
use std::fmt::Write as _;

/// Merges Prometheus text expositions by summing samples of identical series (same
/// metric name and same label set, label order as written). Families keep the order in
/// which they first appear; each family's `# HELP`/`# TYPE` lines appear once, followed by
/// all of its samples (series in first-seen order), so the output is valid exposition
/// text even when a series exists in only some inputs.
///
/// A sample belongs to the family named by the `# TYPE` lines seen so far (in any input):
/// `h_bucket`, `h_sum` and `h_count` belong to a histogram `h`; `s_sum`, `s_count` and
/// `s{quantile="..."}` to a summary `s`. A sample with no `# TYPE` line forms its own untyped
/// family keyed by its metric name. The first `# HELP`/`# TYPE` line seen for a family wins.
///
/// Summary quantiles cannot be merged meaningfully (the median of the service is not a
/// function of the workers' medians), so for `s{quantile="..."}` the **maximum** over the
/// inputs is kept: an upper bound of the true quantile, which is what latency alerts need.
/// A worker whose quantile is `NaN` (no observations) is ignored by the maximum. `_sum` and
/// `_count` of a summary are summed as usual.
///
/// Values are parsed as `f64` (`+Inf`, `-Inf` and `NaN` included); sums that are integral and
/// below 2^53 in magnitude are printed without a decimal point, other finite values with Rust's
/// default `f64` formatting, infinities as `+Inf`/`-Inf`. Timestamps are dropped, label values
/// are kept exactly as escaped in the input, whitespace is normalised (`name{a="x",b="y"} 1`).
/// Empty lines and comments other than `# HELP`/`# TYPE` are ignored; malformed lines are
/// skipped.
pub fn merge_expositions<'a>(inputs: impl IntoIterator<Item = &'a str>) -> String {
    let mut merger = Merger::default();
    for input in inputs {
        for line in input.lines() {
            merger.add_line(line);
        }
    }
    merger.render()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

impl Kind {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "counter" => Some(Self::Counter),
            "gauge" => Some(Self::Gauge),
            "histogram" => Some(Self::Histogram),
            "summary" => Some(Self::Summary),
            "untyped" => Some(Self::Untyped),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
            Self::Summary => "summary",
            Self::Untyped => "untyped",
        }
    }
}

/// How the values of one series from several inputs are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Combine {
    Sum,
    /// Summary quantiles: see [`merge_expositions`].
    Max,
}

struct Family {
    name: String,
    help: Option<String>,
    kind: Option<Kind>,
    /// Indices into [`Merger::series`], in first-seen order.
    series: Vec<usize>,
}

struct Series {
    /// `name` or `name{a="x",b="y"}`, exactly as printed in the output.
    key: String,
    value: f64,
    combine: Combine,
}

#[derive(Default)]
struct Merger {
    families: Vec<Family>,
    family_index: HashMap<String, usize>,
    series: Vec<Series>,
    series_index: HashMap<String, usize>,
    /// Reused buffer for building series keys.
    key: String,
}

impl Merger {
    fn add_line(&mut self, line: &str) {
        let line = line.trim();
        if line.is_empty() {
            return;
        }
        if let Some(comment) = line.strip_prefix('#') {
            self.add_comment(comment);
        } else if let Some(sample) = Sample::parse(line) {
            self.add_sample(&sample);
        }
    }

    /// `# HELP name text` and `# TYPE name kind`; every other comment is ignored.
    fn add_comment(&mut self, comment: &str) {
        let (keyword, rest) = split_token(comment);
        let (name, rest) = split_token(rest);
        if metric_name_len(name) != name.len() || name.is_empty() {
            return;
        }
        match keyword {
            "HELP" => {
                let family = self.family(name);
                self.families[family].help.get_or_insert_with(|| rest.to_owned());
            }
            "TYPE" => {
                if let Some(kind) = Kind::parse(rest) {
                    let family = self.family(name);
                    self.families[family].kind.get_or_insert(kind);
                }
            }
            _ => {}
        }
    }

    fn add_sample(&mut self, sample: &Sample<'_>) {
        let family = self.family_of_sample(sample.name);
        let combine = if self.families[family].kind == Some(Kind::Summary)
            && self.families[family].name == sample.name
            && sample.labels.iter().any(|&(name, _)| name == "quantile")
        {
            Combine::Max
        } else {
            Combine::Sum
        };

        self.key.clear();
        sample.write_key(&mut self.key);
        if let Some(&index) = self.series_index.get(self.key.as_str()) {
            let series = &mut self.series[index];
            series.value = match series.combine {
                Combine::Sum => series.value + sample.value,
                Combine::Max => series.value.max(sample.value),
            };
        } else {
            let index = self.series.len();
            self.series_index.insert(self.key.clone(), index);
            self.series.push(Series { key: self.key.clone(), value: sample.value, combine });
            self.families[family].series.push(index);
        }
    }

    /// The family a sample named `name` belongs to, given the `# TYPE` lines seen so far.
    fn family_of_sample(&mut self, name: &str) -> usize {
        if let Some((family, _)) = self.typed(name) {
            return family;
        }
        if let Some(base) = name.strip_suffix("_bucket") {
            if let Some((family, Kind::Histogram)) = self.typed(base) {
                return family;
            }
        }
        for suffix in ["_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                if let Some((family, Kind::Histogram | Kind::Summary)) = self.typed(base) {
                    return family;
                }
            }
        }
        self.family(name)
    }

    fn typed(&self, name: &str) -> Option<(usize, Kind)> {
        let &family = self.family_index.get(name)?;
        self.families[family].kind.map(|kind| (family, kind))
    }

    /// The family named `name`, created (untyped, without help) if it is new.
    fn family(&mut self, name: &str) -> usize {
        if let Some(&family) = self.family_index.get(name) {
            return family;
        }
        let family = self.families.len();
        self.families.push(Family { name: name.to_owned(), help: None, kind: None, series: Vec::new() });
        self.family_index.insert(name.to_owned(), family);
        family
    }

    fn render(&self) -> String {
        let mut out = String::with_capacity(self.series.iter().map(|s| s.key.len() + 8).sum::<usize>());
        for family in &self.families {
            if let Some(help) = &family.help {
                out.push_str("# HELP ");
                out.push_str(&family.name);
                if !help.is_empty() {
                    out.push(' ');
                    out.push_str(help);
                }
                out.push('\n');
            }
            if let Some(kind) = family.kind {
                let _ = writeln!(out, "# TYPE {} {}", family.name, kind.as_str());
            }
            for &index in &family.series {
                let series = &self.series[index];
                out.push_str(&series.key);
                out.push(' ');
                write_value(&mut out, series.value);
                out.push('\n');
            }
            // Same layout as metrics-exporter-prometheus: a blank line after each family.
            out.push('\n');
        }
        out
    }
}

/// One parsed sample line; the label values are still escaped, as written.
struct Sample<'a> {
    name: &'a str,
    labels: Vec<(&'a str, &'a str)>,
    value: f64,
}

impl<'a> Sample<'a> {
    /// Parses `name[{labels}] value [timestamp]` (`line` already trimmed); `None` if malformed.
    fn parse(line: &'a str) -> Option<Self> {
        let name_len = metric_name_len(line);
        if name_len == 0 {
            return None;
        }
        let name = &line[..name_len];
        let after_name = &line[name_len..];
        let rest = after_name.trim_start();
        let mut labels = Vec::new();
        let rest = if let Some(inside) = rest.strip_prefix('{') {
            parse_labels(inside, &mut labels)?
        } else if rest.len() == after_name.len() {
            // Something other than whitespace or `{` right after the name: `foo-bar 1`.
            return None;
        } else {
            rest
        };

        let mut tokens = rest.split_ascii_whitespace();
        let value = tokens.next()?.parse::<f64>().ok()?;
        if let Some(timestamp) = tokens.next() {
            timestamp.parse::<i64>().ok()?;
        }
        if tokens.next().is_some() {
            return None;
        }
        Some(Self { name, labels, value })
    }

    /// Appends the normalised series key: `name` or `name{a="x",b="y"}`.
    fn write_key(&self, key: &mut String) {
        key.push_str(self.name);
        for (i, (name, value)) in self.labels.iter().enumerate() {
            key.push(if i == 0 { '{' } else { ',' });
            key.push_str(name);
            key.push_str("=\"");
            key.push_str(value);
            key.push('"');
        }
        if !self.labels.is_empty() {
            key.push('}');
        }
    }
}

/// Parses the label pairs after `{` up to and including the closing `}` (which may not be
/// inside a quoted value) and returns the rest of the line. A trailing comma is allowed;
/// duplicate label names are malformed.
fn parse_labels<'a>(mut rest: &'a str, labels: &mut Vec<(&'a str, &'a str)>) -> Option<&'a str> {
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Some(after);
        }
        let name_len = label_name_len(rest);
        if name_len == 0 {
            return None;
        }
        let name = &rest[..name_len];
        rest = rest[name_len..].trim_start().strip_prefix('=')?.trim_start().strip_prefix('"')?;
        let end = closing_quote(rest)?;
        let value = &rest[..end];
        rest = rest[end + 1..].trim_start();
        if labels.iter().any(|&(existing, _)| existing == name) {
            return None;
        }
        labels.push((name, value));
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return None;
        }
    }
}

/// Byte index of the `"` closing a label value whose opening quote precedes `s`, skipping
/// backslash escapes. The index is always at an ASCII `"`, hence a char boundary.
fn closing_quote(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// Length of the metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`) at the start of `s`; 0 if none.
fn metric_name_len(s: &str) -> usize {
    identifier_len(s, |b| b == b'_' || b == b':' || b.is_ascii_alphanumeric())
}

/// Length of the label name (`[a-zA-Z_][a-zA-Z0-9_]*`) at the start of `s`; 0 if none.
fn label_name_len(s: &str) -> usize {
    identifier_len(s, |b| b == b'_' || b.is_ascii_alphanumeric())
}

fn identifier_len(s: &str, allowed: impl Fn(u8) -> bool) -> usize {
    match s.as_bytes().first() {
        Some(first) if !first.is_ascii_digit() => s.bytes().take_while(|&b| allowed(b)).count(),
        _ => 0,
    }
}

/// Splits off the first whitespace-separated token; both parts are trimmed at the start.
fn split_token(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(|c: char| c.is_ascii_whitespace()) {
        Some(end) => (&s[..end], s[end..].trim_start()),
        None => (s, ""),
    }
}

fn write_value(out: &mut String, value: f64) {
    /// 2^53: every integer below it in magnitude is exactly representable as an `f64`.
    const EXACT_INTEGERS: f64 = 9_007_199_254_740_992.0;
    if value.is_nan() {
        out.push_str("NaN");
    } else if value == f64::INFINITY {
        out.push_str("+Inf");
    } else if value == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else if value.fract() == 0.0 && value.abs() < EXACT_INTEGERS {
        let _ = write!(out, "{}", value as i64);
    } else {
        let _ = write!(out, "{value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Non-empty lines, trimmed, with runs of whitespace collapsed to one space.
    fn normalize(text: &str) -> Vec<String> {
        text.lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|line| !line.is_empty())
            .collect()
    }

    /// The family a sample line belongs to, assuming only the names used in these tests.
    fn sample_family(line: &str) -> &str {
        let name = &line[..metric_name_len(line)];
        ["_bucket", "_sum", "_count"].iter().find_map(|suffix| name.strip_suffix(suffix)).unwrap_or(name)
    }

    /// Every `# TYPE` appears once, and every sample of a typed family follows the header of
    /// its own family (samples of untyped families have no header to follow).
    fn assert_families_contiguous(text: &str) {
        let lines = normalize(text);
        let mut typed = std::collections::HashSet::new();
        for line in &lines {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(typed.insert(name), "TYPE for {name} twice in\n{text}");
            }
        }
        let mut current = None;
        for line in &lines {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                current = rest.split(' ').next();
            } else if !line.starts_with('#') && typed.contains(sample_family(line)) {
                assert_eq!(Some(sample_family(line)), current, "misplaced `{line}` in\n{text}");
            }
        }
    }

    const WORKER_A: &str = "\
# HELP http_requests_total Requests served.
# TYPE http_requests_total counter
http_requests_total{method=\"GET\",status=\"200\"} 10
http_requests_total{method=\"POST\",status=\"201\"} 3

# TYPE connections_open gauge
connections_open 4

# HELP request_seconds Request latency.
# TYPE request_seconds histogram
request_seconds_bucket{route=\"users\",le=\"0.005\"} 1
request_seconds_bucket{route=\"users\",le=\"0.01\"} 3
request_seconds_bucket{route=\"users\",le=\"+Inf\"} 4
request_seconds_sum{route=\"users\"} 0.5
request_seconds_count{route=\"users\"} 4

";

    const WORKER_B: &str = "\
# HELP request_seconds Request latency.
# TYPE request_seconds histogram
request_seconds_bucket{route=\"health\",le=\"0.005\"} 7
request_seconds_bucket{route=\"health\",le=\"0.01\"} 7
request_seconds_bucket{route=\"health\",le=\"+Inf\"} 7
request_seconds_sum{route=\"health\"} 0.25
request_seconds_count{route=\"health\"} 7
request_seconds_bucket{route=\"users\",le=\"0.005\"} 2
request_seconds_bucket{route=\"users\",le=\"0.01\"} 2
request_seconds_bucket{route=\"users\",le=\"+Inf\"} 5
request_seconds_sum{route=\"users\"} 1.75
request_seconds_count{route=\"users\"} 5

# HELP http_requests_total Requests served.
# TYPE http_requests_total counter
http_requests_total{method=\"DELETE\",status=\"204\"} 1
http_requests_total{method=\"GET\",status=\"200\"} 32

# TYPE connections_open gauge
connections_open 2

";

    #[test]
    fn two_workers_sum_counter_gauge_histogram() {
        let merged = merge_expositions([WORKER_A, WORKER_B]);
        let expected = "\
# HELP http_requests_total Requests served.
# TYPE http_requests_total counter
http_requests_total{method=\"GET\",status=\"200\"} 42
http_requests_total{method=\"POST\",status=\"201\"} 3
http_requests_total{method=\"DELETE\",status=\"204\"} 1

# TYPE connections_open gauge
connections_open 6

# HELP request_seconds Request latency.
# TYPE request_seconds histogram
request_seconds_bucket{route=\"users\",le=\"0.005\"} 3
request_seconds_bucket{route=\"users\",le=\"0.01\"} 5
request_seconds_bucket{route=\"users\",le=\"+Inf\"} 9
request_seconds_sum{route=\"users\"} 2.25
request_seconds_count{route=\"users\"} 9
request_seconds_bucket{route=\"health\",le=\"0.005\"} 7
request_seconds_bucket{route=\"health\",le=\"0.01\"} 7
request_seconds_bucket{route=\"health\",le=\"+Inf\"} 7
request_seconds_sum{route=\"health\"} 0.25
request_seconds_count{route=\"health\"} 7

";
        assert_eq!(merged, expected);
        assert_families_contiguous(&merged);
        assert_eq!(merged.matches("# HELP request_seconds ").count(), 1);
        assert_eq!(merged.matches("# TYPE http_requests_total ").count(), 1);
    }

    #[test]
    fn merging_is_order_independent_up_to_layout() {
        let ab = merge_expositions([WORKER_A, WORKER_B]);
        let ba = merge_expositions([WORKER_B, WORKER_A]);
        let mut ab = normalize(&ab);
        let mut ba = normalize(&ba);
        ab.sort();
        ba.sort();
        assert_eq!(ab, ba);
    }

    #[test]
    fn series_only_in_second_input_lands_inside_its_family_block() {
        let first = "# TYPE a counter\na{x=\"1\"} 1\n# TYPE b gauge\nb 1\n";
        let second = "# TYPE a counter\na{x=\"2\"} 5\n# TYPE b gauge\nb 2\n# TYPE c counter\nc 7\n";
        let merged = merge_expositions([first, second]);
        assert_eq!(
            normalize(&merged),
            ["# TYPE a counter", "a{x=\"1\"} 1", "a{x=\"2\"} 5", "# TYPE b gauge", "b 3", "# TYPE c counter", "c 7"]
        );
        assert_families_contiguous(&merged);

        // Also when the second input has no headers of its own: the TYPE lines seen in the
        // first input still place `h_bucket`/`h_sum`/`h_count` into family `h`.
        let first = "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n# TYPE z gauge\nz 1\n";
        let second = "h_bucket{le=\"+Inf\",w=\"2\"} 2\nh_sum{w=\"2\"} 2\nh_count{w=\"2\"} 2\n";
        let merged = merge_expositions([first, second]);
        assert_families_contiguous(&merged);
        assert_eq!(normalize(&merged).last().map(String::as_str), Some("z 1"));
    }

    #[test]
    fn label_values_with_braces_commas_and_escaped_quotes() {
        let first = "# TYPE odd counter\n\
                     odd{path=\"/a}b\",list=\"x, y,z\",msg=\"say \\\"hi\\\" }\",bs=\"c:\\\\dir\"} 1\n\
                     odd{path=\"/a}b\",list=\"other\"} 1\n";
        // Same series with extra whitespace, a trailing comma and a timestamp.
        let second =
            "odd{ path = \"/a}b\" , list=\"x, y,z\", msg=\"say \\\"hi\\\" }\",bs=\"c:\\\\dir\", } 2 1700000000000\n";
        let merged = merge_expositions([first, second]);
        assert_eq!(
            normalize(&merged),
            [
                "# TYPE odd counter",
                "odd{path=\"/a}b\",list=\"x, y,z\",msg=\"say \\\"hi\\\" }\",bs=\"c:\\\\dir\"} 3",
                "odd{path=\"/a}b\",list=\"other\"} 1",
            ]
        );
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let input = "\
# TYPE m counter
m{a=\"1\"} 1
m{a=\"1\" 5
m{a=1} 5
m{a=\"1\"} five
m{a=\"1\"} 5 6 7
m{a=\"1\"} 5 not-a-timestamp
m{a=\"1\"}
m{a=\"1\",a=\"2\"} 5
m{a=\"\\\"} 5
m{a=\"1\\
m{1a=\"1\"} 5
m{a=\"1\"}} 5
{a=\"1\"} 5
1m 5
m-x 5
m\u{e9}t 5
m
\u{e9}
# TYPE m bogus
# TYPE
# TYPE 9bad counter
# HELP
# some other comment
# EOF
m{a=\"1\"} 2
";
        let merged = merge_expositions([input]);
        assert_eq!(normalize(&merged), ["# TYPE m counter", "m{a=\"1\"} 3"]);
    }

    #[test]
    fn truncated_input_never_panics() {
        let text = format!("{WORKER_A}odd{{p=\"\\\"}}\u{e9}\\\",\"}} 1\n");
        for end in (0..=text.len()).filter(|&end| text.is_char_boundary(end)) {
            let merged = merge_expositions([&text[..end], &text[end..]]);
            assert_families_contiguous(&merged);
        }
    }

    #[test]
    fn empty_input_gives_empty_output() {
        assert_eq!(merge_expositions([]), "");
        assert_eq!(merge_expositions([""]), "");
        assert_eq!(merge_expositions(["", "\n\n", "  \n"]), "");
        assert_eq!(merge_expositions(["# just a comment\n"]), "");
    }

    #[test]
    fn single_input_round_trips() {
        let input = "\
# HELP http_requests_total Requests served.
# TYPE http_requests_total counter
http_requests_total{method=\"GET\",status=\"200\"} 10
http_requests_total{status=\"500\",method=\"GET\"} 1

# HELP temperature Degrees.
# TYPE temperature gauge
temperature{room=\"a\"} -3.5
temperature{room=\"b\"} 0.1
temperature{room=\"c\"} +Inf
temperature{room=\"d\"} NaN

# HELP latency_seconds Latency summary.
# TYPE latency_seconds summary
latency_seconds{quantile=\"0.5\"} 0.012
latency_seconds{quantile=\"0.99\"} 0.25
latency_seconds_sum 3.5
latency_seconds_count 120

# TYPE request_seconds histogram
request_seconds_bucket{le=\"0.005\"} 1
request_seconds_bucket{le=\"+Inf\"} 4
request_seconds_sum 0.5
request_seconds_count 4

untyped_thing{x=\"y\"} 12345678901

";
        assert_eq!(merge_expositions([input]), input);

        // Whitespace and timestamps are normalised away.
        let sloppy = "  # TYPE g   gauge\n\n g{a=\"b\" ,}\t7   1700000000000 \r\n";
        assert_eq!(normalize(&merge_expositions([sloppy])), ["# TYPE g gauge", "g{a=\"b\"} 7"]);
    }

    #[test]
    fn summary_quantiles_keep_the_max() {
        let first = "# TYPE s summary\ns{quantile=\"0.99\"} 0.5\ns{quantile=\"0.5\"} NaN\ns_sum 1\ns_count 2\n";
        let second = "# TYPE s summary\ns{quantile=\"0.99\"} 0.25\ns{quantile=\"0.5\"} 0.125\ns_sum 2\ns_count 3\n";
        let merged = merge_expositions([first, second]);
        assert_eq!(
            normalize(&merged),
            ["# TYPE s summary", "s{quantile=\"0.99\"} 0.5", "s{quantile=\"0.5\"} 0.125", "s_sum 3", "s_count 5"]
        );
    }

    #[test]
    fn value_formatting() {
        let render = |value: f64| {
            let mut out = String::new();
            write_value(&mut out, value);
            out
        };
        assert_eq!(render(42.0), "42");
        assert_eq!(render(-7.0), "-7");
        assert_eq!(render(-0.0), "0");
        assert_eq!(render(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(render(9_007_199_254_740_991.0), "9007199254740991");
        assert_eq!(render(9_007_199_254_740_992.0), "9007199254740992");
        assert_eq!(render(1e300), format!("{}", 1e300));
        assert_eq!(render(f64::INFINITY), "+Inf");
        assert_eq!(render(f64::NEG_INFINITY), "-Inf");
        assert_eq!(render(f64::NAN), "NaN");
        assert_eq!(normalize(&merge_expositions(["x -Inf\n", "x 1\n"])), ["x -Inf"]);
        assert_eq!(normalize(&merge_expositions(["x +Inf\n", "x -Inf\n"])), ["x NaN"]);
    }

    /// End to end with the real exporter: two "workers" record disjoint halves of the traffic;
    /// merging their renders equals the render of one recorder that saw all of it.
    #[test]
    fn matches_metrics_exporter_prometheus_output() {
        use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

        fn recorder() -> PrometheusRecorder {
            PrometheusBuilder::new().set_buckets(&[0.25, 1.0]).unwrap().build_recorder()
        }
        fn record(recorder: &PrometheusRecorder, requests: &[(&'static str, f64)], open: f64) {
            metrics::with_local_recorder(recorder, || {
                metrics::describe_counter!("requests_total", "Requests served.");
                metrics::describe_histogram!("request_seconds", "Request latency.");
                for &(route, seconds) in requests {
                    metrics::counter!("requests_total", "route" => route, "odd" => "a}b,\"c\"").increment(1);
                    metrics::histogram!("request_seconds", "route" => route).record(seconds);
                }
                metrics::gauge!("connections_open").set(open);
            });
        }

        let first = [("users", 0.125), ("users", 0.5), ("health", 2.0)];
        let second = [("users", 0.5), ("shards", 0.25)];
        let (a, b, all) = (recorder(), recorder(), recorder());
        record(&a, &first, 3.0);
        record(&b, &second, 2.0);
        record(&all, &first, 0.0);
        record(&all, &second, 5.0);

        let merged = merge_expositions([a.handle().render().as_str(), b.handle().render().as_str()]);
        assert_families_contiguous(&merged);
        let mut merged = normalize(&merged);
        let mut expected = normalize(&all.handle().render());
        merged.sort();
        expected.sort();
        assert_eq!(merged, expected);
    }
}
