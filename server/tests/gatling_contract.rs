//! Keeps the Gatling simulations in `loadtest/gatling/` honest. Gatling cannot run on this
//! project's machines (Maven Central and Gatling's bundle host are unreachable), so this test
//! reads the simulations' Java sources instead and:
//!
//! 1. extracts every request (`http("label").get("/path")...`): method, path, query parameters,
//!    the field names of its JSON body, the statuses its `status().is(..)` check expects and its
//!    `jsonPath` / `jmesPath` checks; and every scenario's sequence of requests;
//! 2. checks them against `server/src/openapi/openapi.json`: each (method, path) is an operation
//!    (a trailing slash is ignored, as the router ignores it; a Gatling EL segment `#{x}` must
//!    stand where the path has a parameter such as `{id}`), each query parameter is declared,
//!    each body field is a property of the operation's request-body schema, each checked status
//!    is a documented response, each `jsonPath("$.f")` names a property of that response's
//!    schema, and every `#{var}` is fed or saved before it is used;
//! 3. replays every scenario once against a real shardgate ([`TestApp`]): the same methods,
//!    paths, header and body shapes, asserting the statuses and values the simulations check.
//!
//! The Java is read by a small hand-written lexer that understands only the shapes the
//! simulations use (literal paths, `StringBody("literal JSON")`, a few check forms). Anything
//! else (a computed path, a body built in code, an unknown call in a request chain) is an error,
//! so a simulation cannot drift away from the API unnoticed; the `rejects_*` tests feed the
//! checker broken snippets and make sure it says so.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use common::{repo_root, TestApp};
use sonic_rs::{JsonContainerTrait, JsonValueTrait, Value};

// ---------------------------------------------------------------------------------------------
// A Java lexer: words, string literals, punctuation; comments dropped.

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// An identifier, keyword or number (`10_000`, `99.0`).
    Word(String),
    /// A string literal, unescaped.
    Str(String),
    Punct(char),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
}

fn lex(src: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let start = line;
            i += 2;
            loop {
                match (chars.get(i), chars.get(i + 1)) {
                    (Some('*'), Some('/')) => break,
                    (Some('\n'), _) => line += 1,
                    (None, _) => return Err(format!("line {start}: unterminated comment")),
                    _ => {}
                }
                i += 1;
            }
            i += 2;
        } else if c == '"' {
            if next == Some('"') && chars.get(i + 2) == Some(&'"') {
                return Err(format!("line {line}: text blocks (\"\"\") are not understood; use a string literal"));
            }
            let mut s = String::new();
            i += 1;
            loop {
                let Some(&ch) = chars.get(i) else { return Err(format!("line {line}: unterminated string")) };
                i += 1;
                match ch {
                    '"' => break,
                    '\n' => return Err(format!("line {line}: unterminated string")),
                    '\\' => {
                        let Some(&e) = chars.get(i) else { return Err(format!("line {line}: unterminated string")) };
                        i += 1;
                        match e {
                            'n' => s.push('\n'),
                            't' => s.push('\t'),
                            'r' => s.push('\r'),
                            'b' => s.push('\u{8}'),
                            'f' => s.push('\u{c}'),
                            's' => s.push(' '),
                            '"' | '\'' | '\\' => s.push(e),
                            'u' => {
                                while chars.get(i) == Some(&'u') {
                                    i += 1;
                                }
                                let hex: String = chars.get(i..i + 4).unwrap_or_default().iter().collect();
                                let ch = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32);
                                let Some(ch) = ch else {
                                    return Err(format!("line {line}: escape \\u{hex} not understood"));
                                };
                                s.push(ch);
                                i += 4;
                            }
                            _ => return Err(format!("line {line}: escape \\{e} not understood")),
                        }
                    }
                    _ => s.push(ch),
                }
            }
            out.push(Token { tok: Tok::Str(s), line });
        } else if c == '\'' {
            // A char literal: kept as one opaque word.
            let mut j = i + 1;
            if chars.get(j) == Some(&'\\') {
                j += 1;
            }
            j += 1;
            while j < chars.len() && chars[j] != '\'' {
                j += 1;
            }
            out.push(Token { tok: Tok::Word(chars[i..=j.min(chars.len() - 1)].iter().collect()), line });
            i = j + 1;
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let number = c.is_ascii_digit();
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$' || (number && chars[i] == '.'))
            {
                i += 1;
            }
            out.push(Token { tok: Tok::Word(chars[start..i].iter().collect()), line });
        } else {
            out.push(Token { tok: Tok::Punct(c), line });
            i += 1;
        }
    }
    Ok(out)
}

/// A Java integer literal (`20`, `10_000`, `5L`).
fn int_literal(w: &str) -> Option<i64> {
    w.trim_end_matches(['L', 'l']).replace('_', "").parse().ok()
}

// ---------------------------------------------------------------------------------------------
// What the simulations say.

#[derive(Debug, Clone)]
enum Expect {
    Exists,
    Literal(String),
    /// `isEL("#{var}")`: equal to a session variable.
    Var(String),
}

#[derive(Debug, Clone)]
struct JsonCheck {
    /// `jsonPath("$.field")`
    field: String,
    expect: Expect,
    save_as: Option<String>,
}

#[derive(Debug, Clone)]
struct JmesCheck {
    /// `type(@)` or `length(@)`
    expr: String,
    /// is, lt, lte, gt or gte
    op: String,
    value: String,
}

#[derive(Debug, Clone)]
struct Request {
    /// `File.java:line` of `http("label")`.
    at: String,
    file: String,
    start: usize,
    label: String,
    /// The constant it is assigned to (`static final HttpRequestActionBuilder NAME = http(..)`).
    name: Option<String>,
    method: String,
    /// The literal path without its query.
    path: String,
    /// From the path's `?a=b` and `.queryParam("a", "b")`.
    query: Vec<(String, String)>,
    /// The `StringBody("...")` JSON template.
    body: Option<String>,
    statuses: Vec<u16>,
    json_checks: Vec<JsonCheck>,
    jmes_checks: Vec<JmesCheck>,
}

impl Request {
    /// `GET /api/v1/users/{id}`: EL segments as `{id}`, no trailing slash, no query.
    fn shape(&self) -> String {
        let segs: Vec<&str> =
            segments(&self.path).into_iter().map(|s| if s.contains("#{") { "{id}" } else { s }).collect();
        format!("{} {}", self.method, segs.join("/"))
    }

    /// The path and query, `#{var}`s from the session.
    fn path_and_query(&self, session: &HashMap<String, String>) -> Result<String, String> {
        let mut url = self.path.clone();
        for (i, (k, v)) in self.query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(k);
            url.push('=');
            url.push_str(v);
        }
        render_el(&url, |v| session.get(v).cloned())
            .map_err(|v| format!("{}: #{{{v}}} used in '{}' before it was saved", self.at, self.label))
    }
}

#[derive(Debug, Clone)]
struct Scenario {
    at: String,
    file: String,
    name: String,
    /// Indexes into `Model::requests`, in execution order.
    steps: Vec<usize>,
}

#[derive(Debug, Default)]
struct Model {
    requests: Vec<Request>,
    scenarios: Vec<Scenario>,
    /// Every `contentTypeHeader("...")`.
    content_types: Vec<String>,
    /// Every `getProperty("baseUrl", "default")` default.
    base_url_defaults: Vec<String>,
}

/// One lexed file, with the helpers the extraction needs.
struct Src<'a> {
    file: &'a str,
    toks: &'a [Token],
}

/// A `.name(args)` call in a chain; `args` are token ranges `[start, end)` split at top-level commas.
struct Call {
    name: String,
    at: usize,
    args: Vec<(usize, usize)>,
}

const HTTP_METHODS: [&str; 7] = ["get", "post", "put", "patch", "delete", "head", "options"];

impl<'a> Src<'a> {
    fn tok(&self, i: usize) -> Option<&'a Tok> {
        self.toks.get(i).map(|t| &t.tok)
    }

    fn is_punct(&self, i: usize, c: char) -> bool {
        self.tok(i) == Some(&Tok::Punct(c))
    }

    fn word(&self, i: usize) -> Option<&'a str> {
        match self.tok(i) {
            Some(Tok::Word(w)) => Some(w),
            _ => None,
        }
    }

    fn str_lit(&self, i: usize) -> Option<&'a str> {
        match self.tok(i) {
            Some(Tok::Str(s)) => Some(s),
            _ => None,
        }
    }

    fn at(&self, i: usize) -> String {
        let line = self.toks.get(i).or(self.toks.last()).map_or(0, |t| t.line);
        format!("{}:{line}", self.file)
    }

    fn err(&self, i: usize, msg: impl std::fmt::Display) -> String {
        format!("{}: {msg}", self.at(i))
    }

    /// The arguments of the bracket opened at `open` and the index of its closing bracket.
    fn args(&self, open: usize) -> Result<(Vec<(usize, usize)>, usize), String> {
        let mut depth = 0usize;
        let mut args = Vec::new();
        let mut start = open + 1;
        for i in open..self.toks.len() {
            match self.tok(i) {
                Some(Tok::Punct('(' | '[' | '{')) => depth += 1,
                Some(Tok::Punct(')' | ']' | '}')) => {
                    depth -= 1;
                    if depth == 0 {
                        if i > start {
                            args.push((start, i));
                        }
                        return Ok((args, i));
                    }
                }
                Some(Tok::Punct(',')) if depth == 1 => {
                    args.push((start, i));
                    start = i + 1;
                }
                _ => {}
            }
        }
        Err(self.err(open, "unbalanced brackets"))
    }

    /// The `.name(args)` calls from `i` on, and the index after the last one.
    fn chain(&self, mut i: usize) -> Result<(Vec<Call>, usize), String> {
        let mut calls = Vec::new();
        while self.is_punct(i, '.') {
            let Some(name) = self.word(i + 1) else { return Err(self.err(i + 1, "a method name after '.'")) };
            if !self.is_punct(i + 2, '(') {
                return Err(self.err(i + 2, format!(".{name} is not a call")));
            }
            let (args, close) = self.args(i + 2)?;
            calls.push(Call { name: name.to_string(), at: i + 1, args });
            i = close + 1;
        }
        Ok((calls, i))
    }

    /// The one argument of `call`, which must be a string literal.
    fn one_str(&self, call: &Call, what: &str) -> Result<String, String> {
        match call.args.as_slice() {
            [(s, e)] if e - s == 1 => {
                self.str_lit(*s).map(str::to_string).ok_or_else(|| self.err(call.at, format!(".{}: {what}", call.name)))
            }
            _ => Err(self.err(call.at, format!(".{}: {what}", call.name))),
        }
    }

    /// A literal argument: a string, or a number (as its text).
    fn literal(&self, (s, e): (usize, usize)) -> Option<String> {
        if e - s != 1 {
            return None;
        }
        match self.tok(s)? {
            Tok::Str(v) => Some(v.clone()),
            Tok::Word(w) if int_literal(w).is_some() => Some(int_literal(w)?.to_string()),
            _ => None,
        }
    }

    /// `http("label").method("path")...` starting at `i` (the `http` word).
    fn request(&self, i: usize) -> Result<Request, String> {
        let label = self.str_lit(i + 2).unwrap_or_default().to_string();
        let name = match (self.is_punct(i.wrapping_sub(1), '='), self.word(i.wrapping_sub(2))) {
            (true, Some(w)) => Some(w.to_string()),
            _ => None,
        };
        let (calls, _) = self.chain(i + 4)?;
        let in_req = |m: String| self.err(i, format!("request '{label}': {m}"));
        let Some(first) = calls.first().filter(|c| HTTP_METHODS.contains(&c.name.as_str())) else {
            return Err(in_req(format!(
                "the first call must be one of .{}(\"literal path\")",
                HTTP_METHODS.join("/.")
            )));
        };
        let literal = self.one_str(first, "the path must be one string literal (no concatenation, no function)")?;
        let (path, query) = literal.split_once('?').unwrap_or((&literal, ""));
        let mut req = Request {
            at: self.at(i),
            file: self.file.to_string(),
            start: i,
            label: label.clone(),
            name,
            method: first.name.to_uppercase(),
            path: path.to_string(),
            query: query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (k.to_string(), v.to_string())
                })
                .collect(),
            body: None,
            statuses: Vec::new(),
            json_checks: Vec::new(),
            jmes_checks: Vec::new(),
        };
        for call in &calls[1..] {
            match call.name.as_str() {
                m if HTTP_METHODS.contains(&m) => return Err(in_req(format!("a second method .{m}(..)"))),
                "queryParam" => {
                    let (Some(k), Some(v)) = (
                        call.args.first().and_then(|a| self.literal(*a)),
                        call.args.get(1).and_then(|a| self.literal(*a)),
                    ) else {
                        return Err(in_req(".queryParam needs a literal name and value".into()));
                    };
                    req.query.push((k, v));
                }
                "body" => {
                    let literal_body = match call.args.as_slice() {
                        [(s, e)] if e - s == 4 && self.word(*s) == Some("StringBody") && self.is_punct(s + 1, '(') => {
                            self.str_lit(s + 2).filter(|_| self.is_punct(s + 3, ')'))
                        }
                        _ => None,
                    };
                    let Some(b) = literal_body else {
                        return Err(in_req("the body must be StringBody(\"literal JSON\")".into()));
                    };
                    if req.body.replace(b.to_string()).is_some() {
                        return Err(in_req("two bodies".into()));
                    }
                }
                "check" => {
                    for arg in &call.args {
                        self.check(*arg, &mut req).map_err(&in_req)?;
                    }
                }
                other => {
                    return Err(in_req(format!(
                        ".{other}(..) is not understood by server/tests/gatling_contract.rs: teach it there, or drop it"
                    )))
                }
            }
        }
        if req.statuses.is_empty() {
            return Err(in_req("checks no status: add .check(status().is(..))".into()));
        }
        Ok(req)
    }

    /// One argument of `.check(..)`.
    fn check(&self, (s, e): (usize, usize), req: &mut Request) -> Result<(), String> {
        let head = self.word(s).unwrap_or_default();
        if !self.is_punct(s + 1, '(') {
            return Err(format!("check at {} is not understood", self.at(s)));
        }
        let (head_args, close) = self.args(s + 1)?;
        let (calls, end) = self.chain(close + 1)?;
        if end != e {
            return Err(format!("check {head}(..) at {}: unexpected tokens", self.at(end)));
        }
        let head_literal = || match head_args.as_slice() {
            [a] => self.literal(*a),
            _ => None,
        };
        match head {
            "status" => {
                for c in &calls {
                    match c.name.as_str() {
                        "is" | "in" | "shouldBe" | "within" => {
                            for a in &c.args {
                                let n = self.literal(*a).and_then(|v| v.parse::<u16>().ok());
                                let Some(n) = n else { return Err(format!("status().{}: literal codes only", c.name)) };
                                req.statuses.push(n);
                            }
                        }
                        other => return Err(format!("status().{other}(..) is not understood")),
                    }
                }
                if req.statuses.is_empty() {
                    return Err("status() without .is(code)".into());
                }
            }
            "jsonPath" => {
                let path = head_literal().unwrap_or_default();
                let field = path.strip_prefix("$.").unwrap_or_default();
                if field.is_empty() || !field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!("jsonPath(\"{path}\"): only \"$.field\" is understood"));
                }
                let mut check = JsonCheck { field: field.to_string(), expect: Expect::Exists, save_as: None };
                for c in &calls {
                    let arg = c.args.first().and_then(|a| self.literal(*a));
                    match (c.name.as_str(), arg) {
                        ("ofString" | "ofInt" | "ofLong" | "ofDouble" | "ofBoolean" | "ofObject" | "find", None) => {}
                        ("exists" | "notNull", None) => check.expect = Expect::Exists,
                        ("is" | "shouldBe", Some(v)) => check.expect = Expect::Literal(v),
                        ("isEL", Some(v)) => {
                            check.expect = match v.strip_prefix("#{").and_then(|r| r.strip_suffix('}')) {
                                Some(var) if is_el_name(var) => Expect::Var(var.to_string()),
                                _ if !v.contains("#{") => Expect::Literal(v),
                                _ => return Err(format!("isEL(\"{v}\"): only \"#{{var}}\" is understood")),
                            }
                        }
                        ("saveAs", Some(v)) => check.save_as = Some(v),
                        (other, _) => return Err(format!("jsonPath(..).{other}(..) is not understood")),
                    }
                }
                req.json_checks.push(check);
            }
            "jmesPath" => {
                let expr = head_literal().unwrap_or_default();
                if expr != "type(@)" && expr != "length(@)" {
                    return Err(format!("jmesPath(\"{expr}\"): only \"type(@)\" and \"length(@)\" are understood"));
                }
                let mut found = None;
                for c in &calls {
                    let arg = c.args.first().and_then(|a| self.literal(*a));
                    match (c.name.as_str(), arg) {
                        ("ofString" | "ofInt" | "ofLong" | "find", None) => {}
                        ("is" | "shouldBe" | "lt" | "lte" | "gt" | "gte", Some(v)) if found.is_none() => {
                            let op = if c.name == "shouldBe" { "is" } else { c.name.as_str() };
                            found = Some(JmesCheck { expr: expr.clone(), op: op.to_string(), value: v });
                        }
                        (other, _) => return Err(format!("jmesPath(..).{other}(..) is not understood")),
                    }
                }
                let Some(check) = found else { return Err(format!("jmesPath(\"{expr}\") compares nothing")) };
                req.jmes_checks.push(check);
            }
            other => return Err(format!("check {other}(..) is not understood")),
        }
        Ok(())
    }

    /// `scenario("name").feed(..).exec(REQUEST)...` starting at `i` (the `scenario` word).
    fn scenario(&self, i: usize, requests: &[Request]) -> Result<Scenario, String> {
        let name = self.str_lit(i + 2).unwrap_or_default().to_string();
        let (calls, _) = self.chain(i + 4)?;
        let mut steps = Vec::new();
        for call in &calls {
            match call.name.as_str() {
                "feed" | "exitHereIfFailed" => {}
                "exec" => {
                    for &(s, e) in &call.args {
                        // An inline request, or a (qualified) request constant.
                        let found = if self.word(s) == Some("http") {
                            requests.iter().position(|r| r.file == self.file && r.start == s)
                        } else {
                            let dotted = (s..e).all(|k| {
                                if (k - s) % 2 == 0 {
                                    self.word(k).is_some()
                                } else {
                                    self.is_punct(k, '.')
                                }
                            });
                            let last = self.word(e - 1).filter(|_| dotted && (e - s) % 2 == 1);
                            let matches: Vec<usize> = (0..requests.len())
                                .filter(|&r| last.is_some() && requests[r].name.as_deref() == last)
                                .collect();
                            match matches.as_slice() {
                                [one] => Some(*one),
                                _ => None,
                            }
                        };
                        let Some(r) = found else {
                            return Err(self.err(
                                s,
                                format!("scenario '{name}': exec(..) of something that is not one request constant"),
                            ));
                        };
                        steps.push(r);
                    }
                }
                other => {
                    return Err(self.err(
                        call.at,
                        format!(
                            "scenario '{name}': .{other}(..) is not understood by server/tests/gatling_contract.rs"
                        ),
                    ))
                }
            }
        }
        if steps.is_empty() {
            return Err(self.err(i, format!("scenario '{name}' executes no request")));
        }
        Ok(Scenario { at: self.at(i), file: self.file.to_string(), name, steps })
    }
}

/// `word ( "string" )` at `i`.
fn is_call_with_str(src: &Src, i: usize, word: &str) -> bool {
    src.word(i) == Some(word) && src.is_punct(i + 1, '(') && src.str_lit(i + 2).is_some()
}

/// Reads `(file name, Java source)` pairs into a model; every problem found is an error.
fn extract(files: &[(String, String)]) -> (Model, Vec<String>) {
    let mut model = Model::default();
    let mut errors = Vec::new();
    let mut lexed = Vec::new();
    for (file, text) in files {
        match lex(text) {
            Ok(t) => lexed.push((file.as_str(), t)),
            Err(e) => errors.push(format!("{file}: {e}")),
        }
    }
    // Requests first (scenarios refer to them across files).
    for (file, toks) in &lexed {
        let src = Src { file, toks };
        for i in 0..toks.len() {
            if is_call_with_str(&src, i, "http") && src.is_punct(i + 3, ')') {
                match src.request(i) {
                    Ok(r) => model.requests.push(r),
                    Err(e) => errors.push(e),
                }
            } else if (src.word(i) == Some("http") && src.is_punct(i + 1, '(')) || src.word(i) == Some("httpRequest") {
                // A request this test could not see would go unchecked.
                errors.push(src.err(i, "a request must start with http(\"literal label\")"));
            } else if is_call_with_str(&src, i, "contentTypeHeader") {
                model.content_types.push(src.str_lit(i + 2).unwrap_or_default().to_string());
            } else if src.word(i) == Some("getProperty")
                && src.is_punct(i + 1, '(')
                && src.str_lit(i + 2) == Some("baseUrl")
                && src.is_punct(i + 3, ',')
            {
                match src.str_lit(i + 4) {
                    Some(d) => model.base_url_defaults.push(d.to_string()),
                    None => errors.push(src.err(i, "the baseUrl default must be a string literal")),
                }
            }
        }
    }
    for (file, toks) in &lexed {
        let src = Src { file, toks };
        for i in 0..toks.len() {
            if is_call_with_str(&src, i, "scenario") && src.is_punct(i + 3, ')') {
                match src.scenario(i, &model.requests) {
                    Ok(s) => model.scenarios.push(s),
                    Err(e) => errors.push(e),
                }
            } else if src.word(i) == Some("scenario") && src.is_punct(i + 1, '(') {
                errors.push(src.err(i, "a scenario must start with scenario(\"literal name\")"));
            }
        }
    }
    (model, errors)
}

fn is_el_name(v: &str) -> bool {
    !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The variables `#{..}` in `s`; `Err` names a malformed one.
fn el_vars(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(p) = rest.find("#{") {
        let Some(end) = rest[p..].find('}') else { return Err(rest[p..].to_string()) };
        let var = &rest[p + 2..p + end];
        if !is_el_name(var) {
            return Err(format!("#{{{var}}}: only plain variables are understood"));
        }
        out.push(var.to_string());
        rest = &rest[p + end + 1..];
    }
    Ok(out)
}

/// `s` with each `#{var}` replaced by `value(var)`; `Err(var)` when there is none.
fn render_el(s: &str, mut value: impl FnMut(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(p) = rest.find("#{") {
        let end = rest[p..].find('}').map_or(rest.len(), |e| p + e);
        let var = &rest[p + 2..end];
        out.push_str(&rest[..p]);
        out.push_str(&value(var).ok_or_else(|| var.to_string())?);
        rest = rest.get(end + 1..).unwrap_or_default();
    }
    out.push_str(rest);
    Ok(out)
}

/// A path's segments, a trailing slash ignored (as the router ignores it).
fn segments(path: &str) -> Vec<&str> {
    let p = path.strip_suffix('/').filter(|p| !p.is_empty()).unwrap_or(path);
    p.split('/').collect()
}

// ---------------------------------------------------------------------------------------------
// The OpenAPI side.

fn openapi() -> Value {
    let text = std::fs::read_to_string(repo_root().join("server/src/openapi/openapi.json")).unwrap();
    sonic_rs::from_str(&text).expect("openapi.json is JSON")
}

/// Follows `$ref`s (`#/components/...`) until a value without one.
fn resolve<'a>(doc: &'a Value, mut v: &'a Value) -> Result<&'a Value, String> {
    for _ in 0..16 {
        let Some(r) = v.get("$ref").and_then(|r| r.as_str()) else { return Ok(v) };
        let pointer = r.strip_prefix("#/").ok_or_else(|| format!("$ref {r} is not local"))?;
        let mut cur = doc;
        for seg in pointer.split('/') {
            let seg = seg.replace("~1", "/").replace("~0", "~");
            cur = cur.get(seg.as_str()).ok_or_else(|| format!("$ref {r} points nowhere"))?;
        }
        v = cur;
    }
    Err("a $ref loop".into())
}

struct Operation<'a> {
    template: String,
    item: &'a Value,
    op: &'a Value,
}

/// The operation serving `method path` (a literal segment matches a `{param}` too, an EL
/// segment only a `{param}`); the most literal match wins.
fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> Result<Operation<'a>, String> {
    let paths = doc.get("paths").and_then(|p| p.as_object()).ok_or("openapi.json has no paths")?;
    let want = segments(path);
    let mut best: Option<(usize, &str, &Value)> = None;
    for (template, item) in paths.iter() {
        let have = segments(template);
        if have.len() != want.len() {
            continue;
        }
        let mut literal = 0;
        let fits = have.iter().zip(&want).all(|(t, w)| {
            if t.starts_with('{') && t.ends_with('}') {
                !w.is_empty()
            } else {
                literal += 1;
                t == w
            }
        });
        if fits && best.is_none_or(|(l, ..)| literal > l) {
            best = Some((literal, template, item));
        }
    }
    let Some((_, template, item)) = best else {
        return Err(format!("{path} is no path of openapi.json (trailing slash ignored)"));
    };
    let op = item
        .get(method.to_lowercase().as_str())
        .ok_or_else(|| format!("{template} has no {method} operation in openapi.json"))?;
    Ok(Operation { template: template.to_string(), item, op })
}

/// An object schema's properties (after `$ref`s), or `None` when it has none.
fn properties<'a>(doc: &'a Value, schema: &'a Value) -> Option<&'a sonic_rs::Object> {
    resolve(doc, schema).ok()?.get("properties")?.as_object()
}

/// The JSON schema of a request body or a response (after `$ref`s).
fn json_schema<'a>(doc: &'a Value, v: &'a Value) -> Option<&'a Value> {
    let v = resolve(doc, v).ok()?;
    resolve(doc, v.get("content")?.get("application/json")?.get("schema")?).ok()
}

/// Everything in the simulations that does not match openapi.json (or the rules above).
fn check_contract(model: &Model, doc: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    for r in &model.requests {
        let mut err = |m: String| errors.push(format!("{}: {} '{}': {m}", r.at, r.method, r.label));
        let op = match operation(doc, &r.method, &r.path) {
            Ok(op) => op,
            Err(e) => {
                err(e);
                continue;
            }
        };
        let what = format!("{} {}", r.method, op.template);
        if let Err(e) = el_vars(&r.path) {
            err(e);
        }
        // Query parameters.
        let mut declared = BTreeSet::new();
        for params in [op.item.get("parameters"), op.op.get("parameters")].into_iter().flatten() {
            for p in params.as_array().map(|a| a.iter().collect::<Vec<_>>()).unwrap_or_default() {
                let p = resolve(doc, p).unwrap_or(p);
                if p.get("in").and_then(|v| v.as_str()) == Some("query") {
                    declared.insert(p.get("name").and_then(|v| v.as_str()).unwrap_or_default().to_string());
                }
            }
        }
        for (k, _) in &r.query {
            if !declared.contains(k) {
                err(format!("query parameter {k} is not declared for {what} (it has {declared:?})"));
            }
        }
        // Body fields.
        let body_schema = op.op.get("requestBody").and_then(|b| json_schema(doc, b));
        match (&r.body, body_schema) {
            (None, Some(_))
                if op.op.get("requestBody").and_then(|b| resolve(doc, b).ok()?.get("required")?.as_bool())
                    == Some(true) =>
            {
                err(format!("{what} requires a JSON body"))
            }
            (Some(_), None) => err(format!("{what} takes no JSON body")),
            (Some(body), Some(schema)) => match sonic_rs::from_str::<Value>(body) {
                Ok(v) if v.is_object() => {
                    let props = properties(doc, schema);
                    for (k, val) in v.as_object().unwrap().iter() {
                        if !props.is_some_and(|p| p.contains_key(&k)) {
                            err(format!("body field {k} is not a property of {what}'s request body"));
                        }
                        if let Some(Err(e)) = val.as_str().map(el_vars) {
                            err(e);
                        }
                    }
                }
                _ => err(format!("the body is not a JSON object (EL goes inside strings): {body}")),
            },
            _ => {}
        }
        // Statuses and the response fields checked.
        let responses = op.op.get("responses");
        for status in &r.statuses {
            let Some(resp) = responses.and_then(|rs| rs.get(status.to_string().as_str())) else {
                err(format!("{what} documents no {status} response"));
                continue;
            };
            let schema = json_schema(doc, resp);
            for c in &r.json_checks {
                let prop = schema.and_then(|s| properties(doc, s)).and_then(|p| p.get(&c.field));
                let Some(prop) = prop else {
                    err(format!("jsonPath $.{}: no such property in {what}'s {status} response", c.field));
                    continue;
                };
                let allowed = resolve(doc, prop).ok().and_then(|p| p.get("enum")).and_then(|e| e.as_array());
                if let (Expect::Literal(l), Some(allowed)) = (&c.expect, allowed) {
                    if !allowed.iter().any(|a| a.as_str() == Some(l.as_str())) {
                        err(format!("jsonPath $.{} can never be {l} ({what}'s {status} response)", c.field));
                    }
                }
            }
            for c in r.jmes_checks.iter().filter(|c| c.expr == "type(@)") {
                let ty = schema.and_then(|s| s.get("type")).and_then(|t| t.as_str());
                if ty != Some(c.value.as_str()) {
                    err(format!(
                        "type(@) is {} in {what}'s {status} response, not {}",
                        ty.unwrap_or("unknown"),
                        c.value
                    ));
                }
            }
        }
    }
    // Scenarios: every request runs somewhere, every variable is fed or saved before use.
    for (i, r) in model.requests.iter().enumerate() {
        if !model.scenarios.iter().any(|s| s.steps.contains(&i)) {
            errors.push(format!("{}: request '{}' is not executed by any scenario", r.at, r.label));
        }
    }
    for s in &model.scenarios {
        let (mut saved, mut fed) = (BTreeSet::new(), BTreeSet::new());
        for &i in &s.steps {
            let r = &model.requests[i];
            for v in el_vars(&r.path).unwrap_or_default() {
                if !saved.contains(&v) {
                    errors.push(format!(
                        "{}: scenario '{}': #{{{v}}} in the path of '{}' is not saved by an earlier check",
                        s.at, s.name, r.label
                    ));
                }
            }
            fed.extend(r.body.as_deref().map(el_vars).and_then(Result::ok).unwrap_or_default());
            for c in &r.json_checks {
                if let Expect::Var(v) = &c.expect {
                    if !saved.contains(v) && !fed.contains(v) {
                        errors.push(format!(
                            "{}: scenario '{}': isEL(\"#{{{v}}}\") in '{}' compares with nothing fed or saved",
                            s.at, s.name, r.label
                        ));
                    }
                }
            }
            saved.extend(r.json_checks.iter().filter_map(|c| c.save_as.clone()));
        }
    }
    if !model.content_types.iter().any(|c| c == "application/json") {
        errors.push("no contentTypeHeader(\"application/json\") (k6 sends it on every request)".into());
    }
    errors
}

// ---------------------------------------------------------------------------------------------
// The real simulations.

fn gatling_sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "java") {
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                out.push((name, std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo_root().join("loadtest/gatling/src"), &mut out);
    assert!(!out.is_empty(), "no .java file under loadtest/gatling/src");
    out
}

fn model() -> Model {
    let (model, errors) = extract(&gatling_sources());
    assert!(errors.is_empty(), "the Gatling sources are not understood:\n  {}", errors.join("\n  "));
    model
}

/// Each scenario of `file` as its requests' `METHOD /path status` shapes.
fn scenario_shapes(model: &Model, file: &str) -> Vec<Vec<String>> {
    model
        .scenarios
        .iter()
        .filter(|s| s.file == file)
        .map(|s| {
            s.steps
                .iter()
                .map(|&i| {
                    let r = &model.requests[i];
                    format!("{} {:?}", r.shape(), r.statuses)
                })
                .collect()
        })
        .collect()
}

#[test]
fn simulations_match_the_openapi_contract() {
    let model = model();
    let errors = check_contract(&model, &openapi());
    assert!(errors.is_empty(), "the Gatling simulations and openapi.json disagree:\n  {}", errors.join("\n  "));

    // The Messenger Clone API's scenarios, as the simulations must keep them.
    assert_eq!(scenario_shapes(&model, "CreateUserSimulation.java"), [["POST /api/v1/users [201]"]]);
    assert_eq!(
        scenario_shapes(&model, "UserSimulation.java"),
        [[
            "POST /api/v1/users [201]",
            "GET /api/v1/users/{id} [200]",
            "PATCH /api/v1/users/{id} [200]",
            "GET /api/v1/users [200]",
            "DELETE /api/v1/users/{id} [204]",
            "GET /api/v1/users/{id} [404]",
        ]]
    );
    let create = model.requests.iter().find(|r| r.method == "POST").unwrap();
    let fields: BTreeSet<String> = sonic_rs::from_str::<Value>(create.body.as_deref().unwrap())
        .unwrap()
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, _)| k.to_string())
        .collect();
    assert_eq!(fields, BTreeSet::from(["first_name", "last_name", "email"].map(String::from)));
    assert!(create.json_checks.iter().any(|c| c.field == "id" && c.save_as.is_some()), "the create saves the id");
    let list = model.requests.iter().find(|r| r.shape() == "GET /api/v1/users").unwrap();
    assert_eq!(list.query, [("limit".to_string(), "20".to_string())], "k6's list: ?limit=20");
    // The default target is this machine; -DbaseUrl is the user's to change.
    assert_eq!(model.base_url_defaults, ["http://127.0.0.1:8080"]);
}

// ---------------------------------------------------------------------------------------------
// The checker fails on what it must fail on.

/// The errors for one snippet holding a request `R` and a scenario executing it.
fn errors_for(request: &str) -> Vec<String> {
    let java = format!(
        "class T {{\n  static final HttpRequestActionBuilder R =\n    {request};\n  \
         ScenarioBuilder s = scenario(\"s\").feed(users).exec(T.R);\n  \
         HttpProtocolBuilder p = http.baseUrl(\"x\").contentTypeHeader(\"application/json\");\n}}\n"
    );
    let (model, mut errors) = extract(&[("T.java".to_string(), java)]);
    errors.extend(check_contract(&model, &openapi()));
    errors
}

fn assert_rejected(request: &str, expected: &str) {
    let errors = errors_for(request);
    assert!(
        errors.iter().any(|e| e.contains(expected)),
        "expected an error containing {expected:?} for\n  {request}\ngot {errors:#?}"
    );
}

#[test]
fn accepts_a_correct_snippet() {
    let errors = errors_for(
        r##"http("c").post("/api/v1/users/").body(StringBody("{\"first_name\":\"#{f}\"}"))
             .check(status().is(201), jsonPath("$.id").saveAs("userId"), jsonPath("$.first_name").isEL("#{f}"))"##,
    );
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn rejects_unknown_paths_and_methods() {
    assert_rejected(r##"http("r").get("/api/v1/user/#{userId}").check(status().is(200))"##, "no path of openapi.json");
    assert_rejected(r##"http("r").get("/api/v2/users/").check(status().is(200))"##, "no path of openapi.json");
    assert_rejected(r##"http("r").put("/api/v1/users/").check(status().is(200))"##, "has no PUT operation");
    assert_rejected(r##"http("r").get("/api/v1/#{x}/abc").check(status().is(200))"##, "no path of openapi.json");
}

#[test]
fn rejects_unknown_fields_params_and_statuses() {
    assert_rejected(
        r##"http("r").post("/api/v1/users/").body(StringBody("{\"frist_name\":\"a\"}")).check(status().is(201))"##,
        "body field frist_name",
    );
    assert_rejected(r##"http("r").get("/api/v1/users/?limmit=20").check(status().is(200))"##, "query parameter limmit");
    assert_rejected(
        r##"http("r").get("/api/v1/users/").queryParam("curser", "x").check(status().is(200))"##,
        "query parameter curser",
    );
    assert_rejected(r##"http("r").get("/api/v1/users/").check(status().is(201))"##, "documents no 201 response");
    assert_rejected(
        r##"http("r").post("/api/v1/users/").body(StringBody("{\"first_name\":\"a\"}")).check(status().is(201), jsonPath("$.uid").exists())"##,
        "jsonPath $.uid",
    );
    assert_rejected(
        r##"http("r").get("/api/v1/users/").check(status().is(200), jmesPath("type(@)").is("object"))"##,
        "type(@) is array",
    );
    assert_rejected(r##"http("r").post("/api/v1/users/").check(status().is(201))"##, "requires a JSON body");
}

#[test]
fn rejects_what_it_cannot_read() {
    assert_rejected(r##"http("r").get(BASE + "/api/v1/users/").check(status().is(200))"##, "one string literal");
    assert_rejected(
        r##"http("r").get("/api/v1/users/").asJson().check(status().is(200))"##,
        ".asJson(..) is not understood",
    );
    assert_rejected(r##"http("r").get("/api/v1/users/")"##, "checks no status");
    assert_rejected(r##"http(LABEL).get("/api/v1/users/").check(status().is(200))"##, "http(\"literal label\")");
    assert_rejected(r##"httpRequest("GET", "/api/v1/users/").check(status().is(200))"##, "http(\"literal label\")");
    assert_rejected(
        r##"http("r").post("/api/v1/users/").body(ElFileBody("u.json")).check(status().is(201))"##,
        "StringBody(\"literal JSON\")",
    );
    assert_rejected(r##"http("r").get("/api/v1/users/#{nope}").check(status().is(404))"##, "#{nope} in the path");
    assert_rejected(
        r##"http("r").get("/api/v1/users/").check(status().is(200), regex("x").exists())"##,
        "check regex(..) is not understood",
    );
}

// ---------------------------------------------------------------------------------------------
// Replay against a real shardgate.

/// A value for body field `field` that its schema accepts, unique per call.
fn generated(field: &str, schema: Option<&Value>) -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    let format = schema.and_then(|s| s.get("format")).and_then(|f| f.as_str());
    if format == Some("email") || field == "email" {
        format!("gatling-contract-{}@example.com", &u[..16])
    } else {
        format!("Gc{}", &u[..16])
    }
}

/// The body template with every `#{var}` from the session, or generated (and then fed into
/// the session) as Gatling's feeder would.
fn render_body(template: &str, props: Option<&sonic_rs::Object>, session: &mut HashMap<String, String>) -> String {
    let v: Value = sonic_rs::from_str(template).unwrap();
    let mut out = String::from("{");
    for (k, val) in v.as_object().unwrap().iter() {
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&sonic_rs::to_string(k).unwrap());
        out.push(':');
        match val.as_str() {
            Some(s) => {
                let rendered = render_el(s, |var| {
                    Some(
                        session
                            .entry(var.to_string())
                            .or_insert_with(|| generated(k, props.and_then(|p| p.get(&k))))
                            .clone(),
                    )
                })
                .unwrap();
                out.push_str(&sonic_rs::to_string(&rendered).unwrap());
            }
            None => out.push_str(&sonic_rs::to_string(val).unwrap()),
        }
    }
    out.push('}');
    out
}

/// A JSON value as Gatling's checks compare it: strings bare, anything else as JSON.
fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| sonic_rs::to_string(v).unwrap(), str::to_string)
}

fn jmes_type(v: &Value) -> &'static str {
    if v.is_array() {
        "array"
    } else if v.is_object() {
        "object"
    } else if v.is_str() {
        "string"
    } else if v.is_number() {
        "number"
    } else if v.is_boolean() {
        "boolean"
    } else {
        "null"
    }
}

#[tokio::test]
async fn simulations_replayed_against_shardgate() {
    let model = model();
    let doc = openapi();
    let app = TestApp::start(1).await;
    let mut sent = BTreeSet::new();
    let mut created = Vec::new();
    for s in &model.scenarios {
        let mut session: HashMap<String, String> = HashMap::new();
        for &i in &s.steps {
            let r = &model.requests[i];
            let ctx = format!("scenario '{}' ({}), request '{}' ({})", s.name, s.at, r.label, r.at);
            let url = r.path_and_query(&session).unwrap_or_else(|e| panic!("{ctx}: {e}"));
            let op = operation(&doc, &r.method, &r.path).unwrap_or_else(|e| panic!("{ctx}: {e}"));
            let props = op.op.get("requestBody").and_then(|b| json_schema(&doc, b)).and_then(|s| properties(&doc, s));
            let body = r.body.as_deref().map(|t| render_body(t, props, &mut session));
            let method = reqwest::Method::from_bytes(r.method.as_bytes()).unwrap();
            // As the protocol: Content-Type: application/json on every request.
            let mut req = app.client.request(method, app.url(&url)).header("content-type", "application/json");
            if let Some(b) = &body {
                req = req.body(b.clone());
            }
            let resp = req.send().await.unwrap_or_else(|e| panic!("{ctx}: {e}"));
            let status = resp.status().as_u16();
            let text_body = resp.text().await.unwrap();
            let shown = format!("{ctx}: {} {url} {} -> {status} {text_body}", r.method, body.as_deref().unwrap_or(""));
            assert!(r.statuses.contains(&status), "{shown}: expected {:?}", r.statuses);
            eprintln!("{}: {} {url} {} -> {status}", s.name, r.method, body.as_deref().unwrap_or(""));
            let json: Value = if r.json_checks.is_empty() && r.jmes_checks.is_empty() {
                Value::default()
            } else {
                sonic_rs::from_str(&text_body).unwrap_or_else(|_| panic!("{shown}: not JSON"))
            };
            for c in &r.json_checks {
                let got = json.get(c.field.as_str()).map(text);
                let got = got.unwrap_or_else(|| panic!("{shown}: no $.{}", c.field));
                match &c.expect {
                    Expect::Exists => {}
                    Expect::Literal(l) => assert_eq!(&got, l, "{shown}: $.{}", c.field),
                    Expect::Var(v) => {
                        let want = session.get(v).unwrap_or_else(|| panic!("{shown}: #{{{v}}} unset"));
                        assert_eq!(&got, want, "{shown}: $.{} vs #{{{v}}}", c.field);
                    }
                }
                if let Some(v) = &c.save_as {
                    session.insert(v.clone(), got);
                }
            }
            for c in &r.jmes_checks {
                let got = match c.expr.as_str() {
                    "type(@)" => jmes_type(&json).to_string(),
                    _ => json
                        .as_array()
                        .map(|a| a.len())
                        .or_else(|| json.as_object().map(|o| o.len()))
                        .or_else(|| json.as_str().map(|s| s.chars().count()))
                        .unwrap_or_else(|| panic!("{shown}: length(@) of {}", jmes_type(&json)))
                        .to_string(),
                };
                let ok = match (c.op.as_str(), got.parse::<i64>(), c.value.parse::<i64>()) {
                    ("is", ..) => got == c.value,
                    ("lt", Ok(g), Ok(v)) => g < v,
                    ("lte", Ok(g), Ok(v)) => g <= v,
                    ("gt", Ok(g), Ok(v)) => g > v,
                    ("gte", Ok(g), Ok(v)) => g >= v,
                    _ => false,
                };
                assert!(ok, "{shown}: {} is {got}, expected {} {}", c.expr, c.op, c.value);
            }
            if status == 201 {
                let id = sonic_rs::from_str::<Value>(&text_body).ok().and_then(|v| v.get("id").map(text));
                created.extend(id);
            }
            sent.insert(i);
        }
    }
    // Leave no rows behind (CreateUserSimulation does not delete its user).
    for id in created {
        let r = app.client.delete(app.url(&format!("/api/v1/users/{id}"))).send().await.unwrap();
        assert!(matches!(r.status().as_u16(), 204 | 404), "clean-up of {id}: {}", r.status());
    }
    assert_eq!(sent.len(), model.requests.len(), "every request of the simulations was sent");
}
