//! The messages that docs/troubleshooting.md and the Troubleshooting section of README.md
//! quote are the program's, as it prints them now. A failure names the document's line
//! and the nearest line a run printed or the nearest literal of `crates/`.
//!
//! - Shape: every table row has its header's number of cells (GitHub splits a row at
//!   every unescaped `|`, also inside backticks), and no quoted message is cut into
//!   pieces by its own backticks.
//! - Real runs, for the tables of [`RUN_SECTIONS`]: each message quoted in a table's
//!   first column is a line a run prints, exactly, `…` standing for text left out and
//!   the start open (the quotes leave out `secret-injector.io/<key>: ` and
//!   `secret-injector init: `). The admission messages come from `inject -f` on
//!   [`admission_pods`] and [`warned_pods`]; `init`'s lines from the injected init
//!   container run against OpenBao, moto and addresses where nothing listens
//!   ([`init_lines`]); `exec`'s from the wrapper binary ([`exec_lines`]). A run's temp
//!   directories read as the pod's paths, its 3 s deadline as the default `2m`, and ports
//!   do not count. A row no run here can make is in [`NOT_RUN`], with the reason.
//! - The source, for every other quote (the other tables' first column, the rows of
//!   [`NOT_RUN`], and any text in backticks of [`MIN_PROSE_WORDS`] words or more, less
//!   [`NOT_MESSAGES`]): it shares [`MIN_SHARED`] characters, in one consistent alignment,
//!   with a string literal or `format!` template of `crates/` outside its unit tests, each
//!   `{…}` hole standing for any text. A log line (`INFO target: message key=value`) is a
//!   message its target's own file logs, with fields that file names. This catches a
//!   reworded message, not every stale detail; hence the runs.

use std::collections::HashMap;
use std::path::Path;

use serde_json::json;

use crate::fixtures::{
    self, API_KEY, CNPG_PASSWORD, DB_PASSWORD, DEADLINE_3S, InitRun, JWT_SECRET, NOWHERE, NS,
    PLAIN_TOKEN, STATIC_AWS_KEYS, VAULT_TOKEN_VOLUME, aws_only_config, config, deployment,
    moto_with_secrets, prepare_injected, run_injected, vault_token,
};
use crate::support::{Moto, OpenBao, TokenReviewServer, TokenSigner};
use crate::util::{self, rt};

// ---------------------------------------------------------------------------------------
// The markdown: tables, their rows, the quotes in their first column.

#[derive(Debug)]
struct Table {
    /// The `##`/`###` heading the table is under.
    section: String,
    /// The header's first cell, lowercased.
    kind: String,
    header_line: usize,
    header_cells: usize,
    rows: Vec<Row>,
}

#[derive(Debug)]
struct Row {
    line: usize,
    cells: Vec<String>,
}

/// A row's cells by GitHub's rule: split at every `|` not escaped with `\`.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim();
    let inner = inner.strip_prefix('|').unwrap_or(inner);
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in inner.chars() {
        if c == '|' && !escaped {
            out.push(cur.trim().to_string());
            cur.clear();
        } else {
            cur.push(c);
        }
        escaped = c == '\\' && !escaped;
    }
    out.push(cur.trim().to_string());
    out
}

fn tables(text: &str) -> Vec<Table> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut section = String::new();
    let mut fenced = false;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_start();
        if line.starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            section = line.trim_start_matches('#').trim().to_string();
        } else if !fenced
            && line.starts_with('|')
            && lines
                .get(i + 1)
                .is_some_and(|l| l.trim_start().starts_with("|-") || l.contains("|---"))
        {
            let header = cells(line);
            let mut table = Table {
                section: section.clone(),
                kind: header[0].to_lowercase(),
                header_line: i + 1,
                header_cells: header.len(),
                rows: Vec::new(),
            };
            i += 2;
            while i < lines.len() && lines[i].trim_start().starts_with('|') {
                table.rows.push(Row {
                    line: i + 1,
                    cells: cells(lines[i]),
                });
                i += 1;
            }
            out.push(table);
            continue;
        }
        i += 1;
    }
    out
}

/// The code spans of a text: where each starts (its opening backticks, in chars) and
/// what is between its backticks, as written. A run of n backticks opens a span that the
/// next run of exactly n closes.
fn code_spans(text: &str) -> Vec<(usize, String)> {
    let chars: Vec<char> = text.chars().collect();
    let run_at = |i: usize| chars[i..].iter().take_while(|&&c| c == '`').count();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            i += 1;
            continue;
        }
        let n = run_at(i);
        let start = i + n;
        let mut j = start;
        let mut end = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let m = run_at(j);
                if m == n {
                    end = Some(j);
                    break;
                }
                j += m;
            } else {
                j += 1;
            }
        }
        let Some(end) = end else {
            break;
        };
        out.push((i, chars[start..end].iter().collect()));
        i = end + n;
    }
    out
}

/// A code span as GitHub shows it: one space stripped at each end when both ends have
/// one (so that a span can start or end with a backtick).
fn shown(raw: &str) -> &str {
    if raw.len() >= 2 && raw.starts_with(' ') && raw.ends_with(' ') && !raw.trim().is_empty() {
        &raw[1..raw.len() - 1]
    } else {
        raw
    }
}

/// A message quoted in a document.
#[derive(Debug, Clone)]
struct Quote {
    doc: &'static str,
    line: usize,
    section: String,
    text: String,
}

impl Quote {
    fn at(&self) -> String {
        format!("{}:{} ({})", self.doc, self.line, self.section)
    }
}

/// Tables whose first column quotes the program's messages.
fn is_message_table(kind: &str) -> bool {
    ["message", "warning", "last line", "line"]
        .iter()
        .any(|k| kind.starts_with(k))
}

/// Quotes shorter than this are words, not messages (`permission denied` after
/// `vault-addr`, an annotation name).
const MIN_QUOTE: usize = 20;

/// Texts in backticks that are not the program's messages: commands, and what
/// Kubernetes, kubectl and the API server write.
const NOT_MESSAGES: &[&str] = &[
    "kubectl ",
    "curl ",
    "secret-injector inject -f",
    "secret-injector init --",
    "secret-injector refresh --",
    "/secret-injector/bin/secret-injector exec --env-file",
    "aws_smithy_runtime::",
    "admission webhook \"pods.secret-injector.io\" denied the request",
    "failed calling webhook \"pods.secret-injector.io\"",
    "Startup probe failed",
    "… certificate is valid for",
    "… no endpoints available for service",
    "certs --client",
];

/// Outside the message tables, a text in backticks of fewer words is a name, a value or
/// a setting, not a message.
const MIN_PROSE_WORDS: usize = 4;

fn push_quote(out: &mut Vec<Quote>, doc: &'static str, line: usize, section: &str, text: &str) {
    let text = text.trim();
    if text.chars().filter(|&c| c != '…').count() >= MIN_QUOTE
        && !NOT_MESSAGES.iter().any(|n| text.starts_with(n))
    {
        out.push(Quote {
            doc,
            line,
            section: section.to_string(),
            text: text.to_string(),
        });
    }
}

/// The first column of the message tables.
fn quotes(doc: &'static str, text: &str) -> Vec<Quote> {
    let mut out = Vec::new();
    for t in tables(text) {
        if !is_message_table(&t.kind) {
            continue;
        }
        for r in &t.rows {
            for (_, raw) in code_spans(&r.cells[0]) {
                // In a table, `|` is written `\|`, also inside backticks.
                push_quote(
                    &mut out,
                    doc,
                    r.line,
                    &t.section,
                    &shown(&raw).replace("\\|", "|"),
                );
            }
        }
    }
    out
}

/// Everything else in backticks of [`MIN_PROSE_WORDS`] or more: the code spans of the
/// text and of the other table cells, and the lines of fenced blocks without a language
/// (a language marks a command or a config), less [`NOT_MESSAGES`].
fn prose_quotes(doc: &'static str, text: &str) -> Vec<Quote> {
    let mut out = prose_spans(doc, text);
    out.retain(|q| q.text.split_whitespace().count() >= MIN_PROSE_WORDS);
    out
}

fn prose_spans(doc: &'static str, text: &str) -> Vec<Quote> {
    let mut out = Vec::new();
    let mut section = String::new();
    // Inside a fenced block: whether its lines are quotes.
    let mut fence: Option<bool> = None;
    let mut para: Vec<(usize, &str)> = Vec::new();
    let flush = |para: &mut Vec<(usize, &str)>, section: &str, out: &mut Vec<Quote>| {
        let joined = para.iter().map(|(_, l)| *l).collect::<Vec<_>>().join("\n");
        for (at, raw) in code_spans(&joined) {
            let line = para[0].0 + joined.chars().take(at).filter(|&c| c == '\n').count();
            push_quote(out, doc, line, section, shown(&raw.replace('\n', " ")));
        }
        para.clear();
    };
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if let Some(lang) = t.strip_prefix("```") {
            flush(&mut para, &section, &mut out);
            fence = match fence {
                None => Some(lang.trim().is_empty()),
                Some(_) => None,
            };
        } else if let Some(quoted) = fence {
            if quoted {
                push_quote(&mut out, doc, i + 1, &section, t);
            }
        } else if t.is_empty() || t.starts_with('|') || t.starts_with('#') {
            flush(&mut para, &section, &mut out);
            if t.starts_with('#') {
                section = t.trim_start_matches('#').trim().to_string();
            }
        } else {
            para.push((i + 1, l));
        }
    }
    flush(&mut para, &section, &mut out);
    for t in tables(text) {
        for r in &t.rows {
            for (n, cell) in r.cells.iter().enumerate() {
                if n == 0 && is_message_table(&t.kind) {
                    continue;
                }
                for (_, raw) in code_spans(cell) {
                    push_quote(&mut out, doc, r.line, &t.section, shown(&raw));
                }
            }
        }
    }
    out
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(util::repo().join(rel)).unwrap()
}

/// The README's "Troubleshooting" section, up to the next `## ` heading.
fn readme_troubleshooting() -> String {
    let readme = read("README.md");
    let start = readme
        .find("\n## Troubleshooting\n")
        .expect("README has ## Troubleshooting");
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |e| e + 3);
    // Keep the line numbers of README.md.
    let before = readme[..start + 1].matches('\n').count();
    format!("{}{}", "\n".repeat(before), &rest[..end])
}

fn all_quotes() -> Vec<Quote> {
    let mut q = quotes("docs/troubleshooting.md", &read("docs/troubleshooting.md"));
    q.extend(quotes("README.md", &readme_troubleshooting()));
    q
}

fn all_prose_quotes() -> Vec<Quote> {
    let mut q = prose_quotes("docs/troubleshooting.md", &read("docs/troubleshooting.md"));
    q.extend(prose_quotes("README.md", &readme_troubleshooting()));
    q
}

// ---------------------------------------------------------------------------------------
// Patterns: text where `*` stands for any text, and whether two have a text in common.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tok {
    Char(char),
    Any,
}

type Pattern = Vec<Tok>;

fn push_any(p: &mut Pattern) {
    if p.last() != Some(&Tok::Any) {
        p.push(Tok::Any);
    }
}

/// A quote as a pattern: `…` is any text.
fn quote_pattern(text: &str) -> Pattern {
    let mut p = Pattern::new();
    for c in text.chars() {
        if c == '…' {
            push_any(&mut p);
        } else {
            p.push(Tok::Char(c));
        }
    }
    p
}

fn literal(text: &str) -> Pattern {
    text.chars().map(Tok::Char).collect()
}

fn literal_len(p: &[Tok]) -> usize {
    p.iter().filter(|t| matches!(t, Tok::Char(_))).count()
}

fn show(p: &[Tok]) -> String {
    p.iter()
        .map(|t| match t {
            Tok::Char(c) => c.to_string(),
            Tok::Any => "{…}".to_string(),
        })
        .collect()
}

/// If some text matches both `a` and `b`: the most characters the literal parts of the
/// two can have in common in such a text.
fn overlap(a: &[Tok], b: &[Tok]) -> Option<usize> {
    let (n, m) = (a.len(), b.len());
    let w = m + 1;
    let mut best: Vec<Option<u32>> = vec![None; (n + 1) * w];
    best[0] = Some(0);
    let set = |best: &mut Vec<Option<u32>>, i: usize, j: usize, s: u32| {
        let cell = &mut best[i * w + j];
        if cell.is_none_or(|c| c < s) {
            *cell = Some(s);
        }
    };
    for i in 0..=n {
        for j in 0..=m {
            let Some(s) = best[i * w + j] else {
                continue;
            };
            if i < n && j < m && a[i] == b[j] && a[i] != Tok::Any {
                set(&mut best, i + 1, j + 1, s + 1);
            }
            if i < n && a[i] == Tok::Any {
                set(&mut best, i + 1, j, s);
                if j < m {
                    set(&mut best, i, j + 1, s);
                }
            }
            if j < m && b[j] == Tok::Any {
                set(&mut best, i, j + 1, s);
                if i < n {
                    set(&mut best, i + 1, j, s);
                }
            }
        }
    }
    best[n * w + m].map(|s| s as usize)
}

/// Whether the concrete `text` matches the pattern.
fn matches(pattern: &[Tok], text: &str) -> bool {
    overlap(pattern, &literal(text)).is_some()
}

/// The longest common substring's length, for "the nearest" in failure messages.
fn common(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev = vec![0usize; b.len() + 1];
    let mut best = 0;
    for x in &a {
        let mut cur = vec![0usize; b.len() + 1];
        for (j, y) in b.iter().enumerate() {
            if x == y {
                cur[j + 1] = prev[j] + 1;
                best = best.max(cur[j + 1]);
            }
        }
        prev = cur;
    }
    best
}

fn nearest<'a>(text: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (common(text, c), std::cmp::Reverse(c.len()), c))
        .max()
        .map(|(_, _, c)| c)
}

// ---------------------------------------------------------------------------------------
// The program's text: the string literals of src/ and crates/, each as a pattern.

/// A string literal of `src/` or `crates/` and the file it is in.
struct Literal {
    file: String,
    text: String,
    pattern: Pattern,
}

/// The string literals of Rust source, unescaped; comments and char literals skipped.
fn string_literals(src: &str) -> Vec<String> {
    let c: Vec<char> = src.chars().collect();
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let prev_ident = i > 0 && ident(c[i - 1]);
        match c[i] {
            '/' if c.get(i + 1) == Some(&'/') => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            '/' if c.get(i + 1) == Some(&'*') => {
                let mut depth = 0;
                while i < c.len() {
                    if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                        depth += 1;
                        i += 2;
                    } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            '\'' => {
                if c.get(i + 1) == Some(&'\\') {
                    i += 2;
                    while i < c.len() && c[i] != '\'' {
                        i += 1;
                    }
                    i += 1;
                } else if c.get(i + 2) == Some(&'\'') {
                    i += 3;
                } else {
                    i += 1; // a lifetime
                }
            }
            'r' | 'b' | 'c' if !prev_ident => {
                // r"…", r#"…"#, br"…", b"…", c"…"
                let mut j = i + 1;
                if c[i] == 'b' && c.get(j) == Some(&'r') {
                    j += 1;
                }
                let raw = c[i] == 'r' || (c[i] == 'b' && j == i + 2);
                let hashes = if raw {
                    c[j..].iter().take_while(|&&h| h == '#').count()
                } else {
                    0
                };
                if c.get(j + hashes) == Some(&'"') {
                    if raw {
                        let start = j + hashes + 1;
                        let close: Vec<char> = std::iter::once('"')
                            .chain(std::iter::repeat_n('#', hashes))
                            .collect();
                        let mut k = start;
                        while k < c.len() && !c[k..].starts_with(&close) {
                            k += 1;
                        }
                        out.push(c[start..k].iter().collect());
                        i = k + close.len();
                    } else {
                        let (s, next) = escaped_string(&c, j + 1);
                        out.push(s);
                        i = next;
                    }
                } else {
                    i += 1;
                    while i < c.len() && ident(c[i]) {
                        i += 1;
                    }
                }
            }
            '"' => {
                let (s, next) = escaped_string(&c, i + 1);
                out.push(s);
                i = next;
            }
            ch if ident(ch) => {
                while i < c.len() && ident(c[i]) {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// An ordinary string literal from after its opening quote: its text and the index after
/// its closing quote.
fn escaped_string(c: &[char], mut i: usize) -> (String, usize) {
    let mut s = String::new();
    while i < c.len() && c[i] != '"' {
        if c[i] != '\\' {
            s.push(c[i]);
            i += 1;
            continue;
        }
        i += 1;
        match c.get(i) {
            Some('n') => s.push('\n'),
            Some('t') => s.push('\t'),
            Some('r') => s.push('\r'),
            Some('0') => s.push('\0'),
            Some('x') => {
                let hex: String = c[i + 1..i + 3].iter().collect();
                s.push(u8::from_str_radix(&hex, 16).map_or('?', char::from));
                i += 2;
            }
            Some('u') => {
                let end = i + c[i..].iter().position(|&x| x == '}').unwrap();
                let hex: String = c[i + 2..end].iter().collect();
                s.push(
                    u32::from_str_radix(&hex, 16)
                        .ok()
                        .and_then(char::from_u32)
                        .unwrap_or('?'),
                );
                i = end;
            }
            Some('\n') => {
                while c.get(i + 1).is_some_and(|w| w.is_whitespace()) {
                    i += 1;
                }
            }
            Some(&other) => s.push(other),
            None => {}
        }
        i += 1;
    }
    (s, i + 1)
}

/// A literal as a `format!` template: `{{`/`}}` are braces, any other `{…}` a hole.
fn format_pattern(text: &str) -> Pattern {
    let c: Vec<char> = text.chars().collect();
    let mut p = Pattern::new();
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            '{' if c.get(i + 1) == Some(&'{') => {
                p.push(Tok::Char('{'));
                i += 2;
            }
            '}' if c.get(i + 1) == Some(&'}') => {
                p.push(Tok::Char('}'));
                i += 2;
            }
            '{' => match c[i..].iter().position(|&x| x == '}') {
                Some(k) => {
                    push_any(&mut p);
                    i += k + 1;
                }
                None => {
                    p.push(Tok::Char('{'));
                    i += 1;
                }
            },
            ch => {
                p.push(Tok::Char(ch));
                i += 1;
            }
        }
    }
    p
}

fn rs_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            rs_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// The string literals of `src/` and `crates/` outside the unit tests (`#[cfg(test)] mod tests`),
/// each as a format template and, when it has braces, also as plain text; indexed by
/// their runs of [`WINDOW`] literal characters.
struct Program {
    literals: Vec<Literal>,
    index: HashMap<Vec<char>, Vec<usize>>,
}

/// Characters a quote and a literal must share in one run to be compared at all.
const WINDOW: usize = 8;

/// Literal characters a literal must share with a quote to be its source: enough that a
/// generic template (`{}: {}`) does not count, few enough for a line that quotes a
/// store's answer around a short part of ours (`…: Forbidden/AccessDenied … for Azure
/// client …`).
const MIN_SHARED: usize = 12;

/// The runs of [`WINDOW`] characters of the literal parts of a pattern.
fn windows(p: &[Tok]) -> Vec<Vec<char>> {
    let mut out = Vec::new();
    for part in p.split(|t| *t == Tok::Any) {
        let chars: Vec<char> = part
            .iter()
            .map(|t| match t {
                Tok::Char(c) => *c,
                Tok::Any => unreachable!(),
            })
            .collect();
        out.extend(chars.windows(WINDOW).map(<[char]>::to_vec));
    }
    out
}

impl Program {
    fn load() -> Program {
        let root = util::repo();
        let mut files = Vec::new();
        rs_files(&root.join("src"), &mut files);
        rs_files(&root.join("crates"), &mut files);
        files.sort();
        let mut literals = Vec::new();
        for path in files {
            let src = std::fs::read_to_string(&path).unwrap();
            let code = src
                .find("#[cfg(test)]\nmod tests")
                .map_or(src.as_str(), |at| &src[..at]);
            let file = path.strip_prefix(&root).unwrap().display().to_string();
            for text in string_literals(code) {
                let mut patterns = vec![format_pattern(&text)];
                if text.contains(['{', '}']) {
                    patterns.push(literal(&text));
                }
                for pattern in patterns {
                    literals.push(Literal {
                        file: file.clone(),
                        text: text.clone(),
                        pattern,
                    });
                }
            }
        }
        let mut index: HashMap<Vec<char>, Vec<usize>> = HashMap::new();
        for (n, l) in literals.iter().enumerate() {
            for w in windows(&l.pattern) {
                let at = index.entry(w).or_default();
                if at.last() != Some(&n) {
                    at.push(n);
                }
            }
        }
        Program { literals, index }
    }

    /// The literal of `src/` (of `file` only, if given) the quote matches best, sharing
    /// [`MIN_SHARED`] characters or all of the quote's. Unanchored, the quote may be a
    /// part of the literal's message and the literal a part of the quote (a line that
    /// joins messages: `context: error`); anchored, the quote is the whole message.
    fn source_of(&self, quote: &str, anchored: bool, file: Option<&str>) -> Option<&Literal> {
        let mut q = quote_pattern(quote);
        if !anchored {
            q.insert(0, Tok::Any);
            push_any(&mut q);
        }
        let need = literal_len(&q).min(MIN_SHARED);
        let windows = windows(&q);
        let mut candidates: Vec<usize> = if windows.is_empty() {
            (0..self.literals.len()).collect()
        } else {
            windows
                .iter()
                .filter_map(|w| self.index.get(w))
                .flatten()
                .copied()
                .collect()
        };
        candidates.sort_unstable();
        candidates.dedup();
        candidates
            .into_iter()
            .map(|n| &self.literals[n])
            .filter(|l| file.is_none_or(|f| l.file == f))
            .filter_map(|l| {
                let score = if anchored {
                    overlap(&q, &l.pattern)
                } else {
                    let mut t = vec![Tok::Any];
                    t.extend(&l.pattern);
                    push_any(&mut t);
                    overlap(&q, &t)
                };
                score.map(|s| (s, l))
            })
            .filter(|(s, _)| *s >= need)
            .max_by_key(|(s, _)| *s)
            .map(|(_, l)| l)
    }

    /// The literal nearest to `text`, for the failure message: the file and the text.
    fn nearest(&self, text: &str, file: Option<&str>) -> String {
        let own = self
            .literals
            .iter()
            .filter(|l| file.is_none_or(|f| l.file == f));
        match nearest(text, own.clone().map(|l| l.text.as_str())) {
            Some(near) => {
                let l = own.clone().find(|l| l.text == near).unwrap();
                format!("in {}: {near:?}", l.file)
            }
            None => "none".to_string(),
        }
    }
}

/// The fields of a log line, `key=value`.
type Fields<'a> = Vec<(&'a str, &'a str)>;

/// A line's message and its fields: ` key=value` with a lowercase identifier as key,
/// the message before the first.
fn fields(text: &str) -> (&str, Fields<'_>) {
    let bytes = text.as_bytes();
    let mut starts = Vec::new();
    for (i, _) in text.match_indices('=') {
        let key_start = text[..i]
            .rfind(|ch: char| !(ch.is_ascii_lowercase() || ch == '_'))
            .map_or(0, |k| k + 1);
        if key_start > 0 && bytes[key_start - 1] == b' ' && key_start < i {
            starts.push((key_start, i));
        }
    }
    let message_end = starts.first().map_or(text.len(), |(k, _)| k - 1);
    let mut out = Vec::new();
    for (n, (k, eq)) in starts.iter().enumerate() {
        let end = starts.get(n + 1).map_or(text.len(), |(k2, _)| k2 - 1);
        out.push((&text[*k..*eq], &text[eq + 1..end]));
    }
    (&text[..message_end], out)
}

/// `INFO secret_injector_agent::refresh: message key=value …`: the target, the message
/// and the fields.
fn log_line(text: &str) -> Option<(&str, &str, Fields<'_>)> {
    let (level, rest) = text.split_once(' ')?;
    if !["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level) {
        return None;
    }
    let (target, rest) = rest.split_once(": ")?;
    if !target.starts_with("secret_injector") || target.contains(' ') {
        return None;
    }
    let (message, fields) = fields(rest);
    Some((target, message, fields))
}

// ---------------------------------------------------------------------------------------
// The checks.

#[test]
fn every_table_row_has_the_header_s_cells_and_quotes_are_whole() {
    let mut bad = Vec::new();
    for (doc, text) in [
        ("docs/troubleshooting.md", read("docs/troubleshooting.md")),
        ("README.md", read("README.md")),
    ] {
        for t in tables(&text) {
            for r in &t.rows {
                if r.cells.len() != t.header_cells {
                    bad.push(format!(
                        "{doc}:{}: {} cells, but the header on line {} has {} (an unescaped `|` splits a cell, also inside backticks)",
                        r.line,
                        r.cells.len(),
                        t.header_line,
                        t.header_cells
                    ));
                }
                if !is_message_table(&t.kind) {
                    continue;
                }
                for (_, raw) in code_spans(&r.cells[0]) {
                    if raw.starts_with(' ') == raw.ends_with(' ') {
                        continue;
                    }
                    // A space at one end only: GitHub shows it, and with one backtick
                    // a message that holds backticks is cut into pieces.
                    bad.push(format!(
                        "{doc}:{}: `{raw}` has a space at one end only; quote a message that holds backticks as `` … `` (a space at both ends)",
                        r.line
                    ));
                }
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// The sections whose table rows are matched against real runs, below; the static check
/// is for the rest.
const RUN_SECTIONS: &[&str] = &[
    "Admission denied",
    "Admission warnings",
    "The init container fails",
    "Vault / OpenBao",
    "AWS Secrets Manager",
    "Values, templates, env mode",
    "The app does not start in env mode",
];

#[test]
fn every_quoted_message_is_a_message_of_the_program() {
    let program = Program::load();
    let tables = all_quotes();
    assert!(tables.len() > 100, "found only {} quotes", tables.len());
    let not_run = |q: &&Quote| {
        !RUN_SECTIONS.contains(&q.section.as_str())
            || NOT_RUN.iter().any(|(part, _)| q.text.contains(part))
    };
    let mut bad = Vec::new();
    for q in tables.iter().filter(not_run).chain(&all_prose_quotes()) {
        let text = q.text.as_str();
        let problem = match log_line(text) {
            Some((target, message, fields)) => {
                check_log_line(&program, target, message, &fields).err()
            }
            None => check_message(&program, text).err(),
        };
        if let Some(problem) = problem {
            bad.push(format!("{}: `{text}`\n  {problem}", q.at()));
        }
    }
    assert!(
        bad.is_empty(),
        "{} quoted messages are not the program's:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// A quote, or its message before ` key=value` fields, matches a literal; the fields'
/// names are in that literal's file.
fn check_message(program: &Program, text: &str) -> Result<(), String> {
    // `<what failed>` stands for any text, like `…`.
    let mut quote = String::new();
    let mut placeholder = false;
    for c in text.chars() {
        match c {
            '<' => placeholder = true,
            '>' if placeholder => {
                placeholder = false;
                quote.push('…');
            }
            _ if placeholder => {}
            c => quote.push(c),
        }
    }
    if program.source_of(&quote, false, None).is_some() {
        return Ok(());
    }
    let (message, fields) = fields(&quote);
    if !fields.is_empty()
        && let Some(l) = program.source_of(message, false, None)
    {
        let src = read(&l.file);
        return match fields.iter().find(|(key, _)| !src.contains(key)) {
            Some((key, _)) => Err(format!("{} logs no field `{key}`", l.file)),
            None => Ok(()),
        };
    }
    Err(format!(
        "matches no literal of crates/; the nearest {}",
        program.nearest(text, None)
    ))
}

fn check_log_line(
    program: &Program,
    target: &str,
    message: &str,
    fields: &[(&str, &str)],
) -> Result<(), String> {
    // `secret_injector_agent::refresh::session` is crates/agent/src/refresh/session.rs.
    let (krate, module) = target
        .trim_start_matches("secret_injector_")
        .split_once("::")
        .unwrap_or((target, ""));
    let rel = module.replace("::", "/");
    let root = util::repo();
    let file = [
        format!("crates/{krate}/src/{rel}.rs"),
        format!("crates/{krate}/src/{rel}/mod.rs"),
    ]
    .into_iter()
    .find(|f| root.join(f).exists())
    .ok_or_else(|| format!("no module {target} in crates/"))?;
    let message = message.trim_end();
    if program
        .source_of(message, !message.ends_with('…'), Some(&file))
        .is_none()
    {
        return Err(format!(
            "the message {message:?} is not logged in {file}; the nearest {}",
            program.nearest(message, Some(&file))
        ));
    }
    let src = read(&file);
    for (key, value) in fields {
        if !src.contains(key) {
            return Err(format!("{file} logs no field `{key}`"));
        }
        // An error with our context (`what: why`); the OS's or a library's alone is not ours.
        if *key == "error" && value.chars().count() >= MIN_QUOTE && value.contains(": ") {
            check_message(program, value).map_err(|e| format!("the error {value:?} {e}"))?;
        }
    }
    Ok(())
}

#[test]
fn the_parsers_of_this_test() {
    assert_eq!(
        cells("| a | `b|c` | d \\| e |"),
        ["a", "`b", "c`", "d \\| e"]
    );
    let spans: Vec<String> = code_spans("``x `y` z`` / `` `a` b… `` and `c`")
        .iter()
        .map(|(_, raw)| shown(raw).to_string())
        .collect();
    assert_eq!(spans, ["x `y` z", "`a` b…", "c"]);
    assert_eq!(
        string_literals(
            "let a = \"x{y}\\n\"; // \"no\"\nlet c = '\"'; r#\"r\"w\"#; b'x'; fn f<'a>(s: &'a str) { \"a\\\n   b\" }"
        ),
        ["x{y}\n", "r\"w", "ab"]
    );
    let t = format_pattern("`{name}` is {{ {} }}");
    assert_eq!(show(&t), "`{…}` is { {…} }");
    assert!(matches(&t, "`db` is { x }"));
    assert!(!matches(&t, "`db` is x"));
    assert_eq!(
        overlap(&quote_pattern("ab…yz"), &format_pattern("a{}z")),
        Some(2)
    );
    assert!(overlap(&quote_pattern("abc…"), &format_pattern("abd{}")).is_none());
    let (target, message, fields) = log_line(
        "WARN secret_injector_agent::refresh: refresh failed; keeping x error=a: b (HTTP 404) retry_in_s=10",
    )
    .unwrap();
    assert_eq!(
        (target, message),
        (
            "secret_injector_agent::refresh",
            "refresh failed; keeping x"
        )
    );
    assert!(log_line("secret-injector init: a: b").is_none());
    assert_eq!(fields, [("error", "a: b (HTTP 404)"), ("retry_in_s", "10")]);
}

// ---------------------------------------------------------------------------------------
// Real runs.

/// Ports vary between runs: `127.0.0.1:18200` in a quote stands for any port.
fn without_ports(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("127.0.0.1:") {
        let (head, tail) = rest.split_at(at + "127.0.0.1:".len());
        out.push_str(head);
        let digits = tail.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 {
            out.push_str("PORT");
        }
        rest = &tail[digits..];
    }
    out.push_str(rest);
    out
}

/// The quotes of `sections` that match none of `lines` exactly (`…` for any text, the
/// line's start open: the quotes leave out the annotation or the `secret-injector init:`
/// prefix), each with the nearest real line.
fn unmatched(quotes: &[&Quote], lines: &[String]) -> Vec<String> {
    let lines: Vec<String> = lines.iter().map(|l| without_ports(l)).collect();
    let mut bad = Vec::new();
    for q in quotes {
        let mut p = quote_pattern(&without_ports(q.text.trim()));
        p.insert(0, Tok::Any);
        if !lines.iter().any(|l| matches(&p, l)) {
            let near = nearest(&q.text, lines.iter().map(String::as_str)).unwrap_or_default();
            bad.push(format!(
                "{}: `{}`\n  is not what a run prints; the nearest line of the runs:\n  {near}",
                q.at(),
                q.text
            ));
        }
    }
    bad
}

fn quotes_in(sections: &[&str], quotes: &[Quote]) -> Vec<Quote> {
    quotes
        .iter()
        .filter(|q| sections.contains(&q.section.as_str()))
        .cloned()
        .collect()
}

// --- Admission.

/// A pod in namespace `prod` with `secret-injector.io/<k>: v` per annotation (a key
/// with the prefix as it is), and `spec` (default: one container `app` with a command).
fn pod(name: &str, annotations: &[(&str, &str)], spec: serde_json::Value) -> serde_json::Value {
    let mut ann = serde_json::Map::new();
    for (k, v) in annotations {
        let key = if k.starts_with("secret-injector.io/") {
            k.to_string()
        } else {
            format!("secret-injector.io/{k}")
        };
        ann.insert(key, serde_json::Value::String(v.to_string()));
    }
    let mut spec = spec;
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "app", "image": "app:1", "command": ["/app"]}]);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "prod", "annotations": ann},
        "spec": spec,
    })
}

const DB: &str = "vault:secret/data/prod/db#password";

/// One pod per admission message the documents quote, each with that one problem (on
/// top of a valid `secret-db`), and the pods of the size and count limits.
fn admission_pods() -> Vec<serde_json::Value> {
    let none = || json!({});
    let app = |extra: serde_json::Value| {
        let mut c = json!({"name": "app", "image": "app:1", "command": ["/app"]});
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        c
    };
    let mut pods = Vec::new();

    // The limits: 262195 bytes of annotations (keys and values) in all.
    let filler_key = "secret-injector.io/filler";
    let used = "secret-injector.io/secret-db".len() + DB.len() + filler_key.len();
    let filler = "x".repeat(262_195 - used);
    pods.push(pod(
        "annotations-total",
        &[("secret-db", DB), (filler_key, &filler)],
        none(),
    ));
    let many: Vec<_> = (0..129)
        .map(|i| json!({"name": format!("c{i}"), "image": "c:1"}))
        .collect();
    pods.push(pod(
        "containers",
        &[("secret-db", DB)],
        json!({"containers": many}),
    ));
    let env: Vec<_> = (0..16_385)
        .map(|i| json!({"name": format!("V{i}"), "value": "x"}))
        .collect();
    pods.push(pod(
        "entries",
        &[("secret-db", DB)],
        json!({"containers": [app(json!({"env": env}))]}),
    ));
    let keys: Vec<String> = (0..150).map(|i| format!("secret-x{i}")).collect();
    let problems: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "vault:")).collect();
    pods.push(pod("problems", &problems, none()));

    // One annotation beside a valid secret-db.
    let long_key = "x".repeat(80);
    let long_path = format!("/{}", "a".repeat(1100));
    for (key, value) in [
        ("secret-db", "vualt:x"),
        ("secret-db", "secret/data/prod/db#password"),
        ("secret-db", "aws:"),
        ("secret-db", "vault:secret/data/x#"),
        ("secret-db", "vault:/v1/secret/data/db"),
        ("secret-db", "vault:secret/data/db?verison=3"),
        ("secret-db", "aws:x?version=3"),
        ("secret-db", "vault:secret/data/db?version=latest"),
        ("secret-db", "aws:prod db"),
        ("secret-db", "gcp:my-secret"),
        ("secret-db", "azure:my-vault/my-secret"),
        ("secert-db", "vault:x"),
        (long_key.as_str(), "x"),
        ("secret-db/password", DB),
        ("secret-DB", DB),
        ("file-mode-bd", "0400"),
        ("file-mode-db", "0644"),
        ("file-mode-db", "rw"),
        ("env-db-password", DB),
        ("containers", "ap"),
        ("mount-path", "secrets"),
        ("mount-path", long_path.as_str()),
        ("vault-addr", "https://evil:8200"),
        ("vault-auth-method", "approle"),
        ("vault-auth-path", "auth/kubernetes/"),
        ("aws-role-arn", "app-secrets"),
        ("aws-region", "Frankfurt"),
        ("refresh-interval", "1s"),
        ("refresh-interval", "48h"),
        ("refresh-interval", "five minutes"),
        ("reload-url", "http://127.0.0.1:9090/-/reload"),
        ("inject", "no"),
        ("status", "done"),
    ] {
        pods.push(pod(key, &[("secret-db", DB), (key, value)], none()));
    }
    for url in [
        "https://127.0.0.1:9090/-/reload",
        "http://prometheus:9090/-/reload",
        "http://u:p@127.0.0.1:8080/",
        "/-/reload",
    ] {
        pods.push(pod(
            "reload-url",
            &[
                ("secret-db", DB),
                ("refresh-interval", "5m"),
                ("reload-url", url),
            ],
            none(),
        ));
    }

    // References and env mode.
    pods.push(pod(
        "env-from",
        &[("env-from", "aws:x#POSTGRES_PASSWORD")],
        none(),
    ));
    pods.push(pod(
        "env-from-allow",
        &[("env-from", "aws:x"), ("env-from-allow", "LD-PRELOAD")],
        none(),
    ));
    pods.push(pod(
        "env-mount",
        &[
            ("secret-db", DB),
            ("env-DB_PASSWORD", DB),
            ("mount-path", "/secret-injector/files"),
        ],
        none(),
    ));
    pods.push(pod(
        "env-collides",
        &[("env-DB_PASSWORD", DB)],
        json!({"volumes": [{"name": "x", "emptyDir": {}}],
               "containers": [app(json!({"volumeMounts": [{"name": "x", "mountPath": "/secret-injector"}]}))]}),
    ));
    pods.push(pod(
        "env-no-command",
        &[("env-DB_PASSWORD", DB), ("command", "/app/server")],
        json!({"containers": [{"name": "app", "image": "app:1"}]}),
    ));

    // Templates.
    let parts = format!("{{{{ {} }}}}", vec!["secrets.db.password"; 101].join(" ~ "));
    let nested = format!(
        "{}x{}",
        "{% if true %}".repeat(33),
        "{% endif %}".repeat(33)
    );
    let big = "x".repeat(33_000);
    for (name, secrets, template) in [
        ("cfg", &["a", "b"][..], "{{ secrets.api.x }}"),
        ("cfg", &["db"], "{{ secrets.api.x }}"),
        ("config.yaml", &["db"], "{{ password }}"),
        ("cfg", &["db"], "{{ secrets.db.password"),
        ("cfg", &["db"], "{{ secrets.db.password | b64decode }}"),
        ("cfg", &["db"], "{% if secrets.db is secret %}x{% endif %}"),
        ("env", &["env"], "{{ env('HOME') }}"),
        ("cfg", &["db"], big.as_str()),
        ("cfg", &["db"], parts.as_str()),
        ("cfg", &["db"], nested.as_str()),
    ] {
        let keys: Vec<String> = secrets.iter().map(|s| format!("secret-{s}")).collect();
        let template_key = format!("template-{name}");
        let mut ann: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), DB)).collect();
        ann.push((&template_key, template));
        pods.push(pod("template", &ann, none()));
    }

    // Containers and volumes.
    pods.push(pod(
        "mesh-only",
        &[("secret-db", DB)],
        json!({"containers": [{"name": "istio-proxy", "image": "proxy:1"}]}),
    ));
    pods.push(pod(
        "collides",
        &[("secret-db", DB), ("mount-path", "/etc/app/secrets")],
        json!({"volumes": [{"name": "cfg", "emptyDir": {}}],
               "containers": [app(json!({"volumeMounts": [{"name": "cfg", "mountPath": "/etc/app"}]}))]}),
    ));
    pods.push(pod(
        "reserved-volume",
        &[("secret-db", DB)],
        json!({"volumes": [{"name": "secret-injector-env", "emptyDir": {}}]}),
    ));
    pods.push(pod(
        "reserved-mount",
        &[("secret-db", DB)],
        json!({"containers": [app(json!({})), {"name": "debug", "image": "debug:1",
               "volumeMounts": [{"name": "secret-injector-token-vault", "mountPath": "/t"}]}]}),
    ));
    pods.push(pod(
        "probe-port",
        &[("secret-db", DB), ("refresh-interval", "5m")],
        json!({"containers": [app(json!({"ports": [{"containerPort": 8099}]}))]}),
    ));
    pods.push(pod(
        "host-network",
        &[("secret-db", DB), ("refresh-interval", "5m")],
        json!({"hostNetwork": true}),
    ));
    // The example of several problems in one message.
    pods.push(pod(
        "three",
        &[
            ("status", "done"),
            ("mount-path", "secrets"),
            ("refresh-interval", "five minutes"),
        ],
        none(),
    ));
    pods
}

/// Pods that are injected, with a warning each.
fn warned_pods() -> Vec<serde_json::Value> {
    let none = json!({});
    vec![
        pod(
            "w",
            &[("env-DB_PASSWORD", DB), ("refresh-interval", "5m")],
            none.clone(),
        ),
        pod("w", &[("secret-db", "aws:prod/db#password")], none.clone()),
        pod(
            "w",
            &[("secret-db", DB), ("command", "[\"/app\"]")],
            none.clone(),
        ),
        pod(
            "w",
            &[("secret-db", DB), ("env-from-allow", "LD_PRELOAD")],
            none.clone(),
        ),
        pod(
            "w",
            &[
                ("env-from", "vault:secret/data/prod/db"),
                ("env-from-allow", "DB_PASSWORD"),
            ],
            none,
        ),
    ]
}

/// `inject -f -` on `pods`: every line it prints, and its exit code.
fn inject(pods: &[serde_json::Value]) -> (Vec<String>, Option<i32>) {
    let docs: Vec<String> = pods.iter().map(|p| p.to_string()).collect();
    let out = util::run(&["inject", "-f", "-"], Some(&docs.join("\n---\n")));
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    (
        text.lines().map(str::to_string).collect(),
        out.status.code(),
    )
}

#[test]
fn admission_messages_are_what_inject_prints() {
    let (mut lines, code) = inject(&admission_pods());
    assert_eq!(code, Some(1));
    let (warnings, code) = inject(&warned_pods());
    assert_eq!(code, Some(0), "{warnings:?}");
    assert_eq!(warnings.len(), warned_pods().len(), "{warnings:?}");
    lines.extend(warnings);

    let quotes = all_quotes();
    let admission = quotes_in(&["Admission denied", "Admission warnings"], &quotes);
    assert!(admission.len() > 60, "{}", admission.len());
    let mut bad = unmatched(&admission.iter().collect::<Vec<_>>(), &lines);

    // The example of a message with several problems, as a whole.
    let doc = read("docs/troubleshooting.md");
    let example = doc
        .split("\n```\n")
        .nth(1)
        .expect("a fenced example under Admission denied");
    let real = lines
        .iter()
        .position(|l| l.starts_with("Pod/three: "))
        .map(|at| {
            let first = lines[at].trim_start_matches("Pod/three: ");
            let n: usize = first.split(' ').next().unwrap().parse().unwrap();
            std::iter::once(first.to_string())
                .chain(lines[at + 1..=at + n].iter().cloned())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap();
    if example.trim() != real {
        bad.push(format!(
            "docs/troubleshooting.md: the example of several problems is not what inject prints:\n{real}"
        ));
    }
    assert!(
        bad.is_empty(),
        "{} admission messages are not what inject prints:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

// --- The init container and exec.

/// Rows of the init container's tables that no run here can print, each by a part of its
/// quote, with the reason. They are still matched against the literals of crates/.
const NOT_RUN: &[(&str, &str)] = &[
    (
        "AccessDeniedException for AWS role",
        "real AWS's IAM refusal; moto answers one in XML, without the code (the `HTTP 403 without an AWS error code` row)",
    ),
    (
        "InvalidIdentityTokenException",
        "real STS checks the token's audience against the OIDC provider; moto's STS takes any token",
    ),
    (
        "unhandled error (AccessDenied)",
        "real STS checks the role's trust policy; moto's STS does not",
    ),
    (
        "gcp:…: ",
        "Google's answers; tests/it/clouds.rs makes their form with a stand-in",
    ),
    (
        "azure:…: ",
        "Azure's answers; tests/it/clouds.rs makes their form with a stand-in",
    ),
];

const SA: &str = "payments-api";
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/deparrow-secrets";

/// The last line of an init run, as the pod would print it: the temp directories its
/// mounts were remapped to read as the mount paths, and the 3 s deadline of the runs that
/// give up as the default `2m`.
fn pod_line(run: &InitRun) -> String {
    let mut line = run.last_line();
    for (path, dir) in &run.mounts {
        line = line.replace(dir.to_str().unwrap(), path);
    }
    line.replace("gave up after 3s", "gave up after 2m")
}

/// OpenBao as the Vault rows have it: KV v2 `payments/db` and `payments/keys` that role
/// `payments-api` (service account payments-api) may read, at `jwt` and `kubernetes`
/// auth, and `other/db` it may not.
async fn payments_bao(signer: &TokenSigner, reviewer_port: u16) -> OpenBao {
    let bao = OpenBao::start().await;
    bao.kv2_put(
        "payments/db",
        json!({"username": "payments", "password": DB_PASSWORD}),
    )
    .await;
    bao.kv2_put("payments/keys", json!({"my-key": API_KEY}))
        .await;
    bao.kv2_put("other/db", json!({"password": "not-for-payments"}))
        .await;
    bao.policy(
        "payments",
        "path \"secret/data/payments/*\" { capabilities = [\"read\"] }",
    )
    .await;
    bao.setup_jwt("jwt", &signer.public_pem, &[(SA, NS, SA, "payments")])
        .await;
    bao.setup_kubernetes("kubernetes", reviewer_port, &[(SA, NS, SA, "payments")])
        .await;
    bao
}

/// The init container's last lines, each from a run that makes one row's failure.
fn init_lines() -> Vec<String> {
    let rt = rt();
    let _guard = rt.enter();
    let signer = TokenSigner::new();
    let reviewer = rt.block_on(TokenReviewServer::start(&signer.public_pem));
    let bao = rt.block_on(payments_bao(&signer, reviewer.port));
    let tls_dir = tempfile::tempdir().unwrap();
    let tls_bao = rt.block_on(async {
        let bao = OpenBao::start_tls(tls_dir.path()).await;
        bao.setup_jwt("jwt", &signer.public_pem, &[(SA, NS, SA, "default")])
            .await;
        bao.setup_kubernetes(
            "kubernetes",
            reviewer.port,
            &[("app", NS, "app", "default")],
        )
        .await;
        bao
    });
    // The README's rows: role `app`, which may read prod/ (nothing there) through jwt auth.
    rt.block_on(async {
        bao.policy(
            "prod",
            "path \"secret/data/prod/*\" { capabilities = [\"read\"] }",
        )
        .await;
        bao.jwt_role("jwt", ("app", NS, "app"), &["prod"], false)
            .await;
    });
    let tls_kubernetes = format!(
        "vault:\n  address: {}\n  ca_cert: {}\n",
        tls_bao.addr,
        tls_dir.path().join("vault-ca.pem").display()
    );
    let prod_db = ("secret-db", "vault:secret/data/prod/db#password");
    let not_vault = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new().fallback(|| async { "<html>a portal's page</html>" });
        tokio::spawn(async move { axum::serve(listener, app).await });
        port
    });
    let moto = rt.block_on(moto_with_secrets(&[
        (
            "prod/cnpg/postgres-credentials",
            &json!({"username": "app", "password": CNPG_PASSWORD}).to_string(),
        ),
        ("deparrow/production/token", PLAIN_TOKEN),
        (
            "deparrow/production/secrets",
            &json!({"JWT_SECRET": JWT_SECRET, "LD_PRELOAD": "/lib/x.so"}).to_string(),
        ),
    ]));
    let (enforcing, enforced_arn) = rt.block_on(Moto::start_enforcing(
        "deparrow-secrets",
        "secretsmanager:ListSecrets",
        &[("deparrow/production/secrets", "{}")],
    ));
    let dead = format!("http://127.0.0.1:{}", util::free_port());

    let jwt = config(&bao.addr, NOWHERE);
    let kubernetes = format!("vault:\n  address: {}\n", bao.addr);
    let aws = aws_only_config(&moto.url);
    let db = ("secret-db", "vault:secret/data/payments/db#password");
    let dep = |ann: &[(&str, &str)]| deployment(ann, SA);
    let token = || vault_token(&signer, SA);
    let aws_token = || fixtures::aws_token(&signer, SA);
    let with_role = |r: (&'static str, &'static str)| dep(&[r, ("aws-role-arn", ROLE_ARN)]);

    // The manifest, the webhook's config, the projected tokens, more env.
    type Run<'a> = (
        String,
        String,
        Vec<(&'static str, String)>,
        Vec<(&'a str, &'a str)>,
    );
    let mut runs: Vec<Run> = vec![
        // Vault: logins refused.
        (
            dep(&[db]),
            kubernetes.clone(),
            vec![vault_token(&signer, "other")],
            vec![],
        ),
        (
            dep(&[db]),
            kubernetes.clone(),
            vec![(VAULT_TOKEN_VOLUME, signer.token(NS, SA, "not-vault"))],
            vec![],
        ),
        (
            dep(&[db, ("vault-role", "nosuch")]),
            kubernetes.clone(),
            vec![token()],
            vec![],
        ),
        (
            dep(&[db, ("vault-auth-path", "k8s-prod")]),
            kubernetes.clone(),
            vec![token()],
            vec![],
        ),
        (
            dep(&[db]),
            jwt.clone(),
            vec![vault_token(&signer, "other")],
            vec![],
        ),
        (
            dep(&[db]),
            jwt.clone(),
            vec![(VAULT_TOKEN_VOLUME, signer.token(NS, SA, "not-vault"))],
            vec![],
        ),
        (
            dep(&[db, ("vault-role", "nosuch")]),
            jwt.clone(),
            vec![token()],
            vec![],
        ),
        // Vault: reads refused or missing.
        (
            dep(&[("secret-db", "vault:secret/data/other/db#password")]),
            jwt.clone(),
            vec![token()],
            vec![],
        ),
        (
            dep(&[("secret-db", "vault:secret/payments/db#password")]),
            jwt.clone(),
            vec![token()],
            vec![],
        ),
        (
            dep(&[("secret-db", "vault:secret/data/payments/nope#password")]),
            jwt.clone(),
            vec![token()],
            vec![],
        ),
        (
            dep(&[(
                "secret-db",
                "vault:secret/data/payments/db?version=5#password",
            )]),
            jwt.clone(),
            vec![token()],
            vec![],
        ),
        // The pod's token.
        (
            dep(&[db]),
            jwt.clone(),
            vec![(VAULT_TOKEN_VOLUME, "this is not a token".to_string())],
            vec![],
        ),
        (dep(&[db]), jwt.clone(), vec![], vec![]),
        // Vault unreachable, untrusted, or something else.
        (
            dep(&[db]),
            config(&dead, NOWHERE),
            vec![token()],
            DEADLINE_3S.to_vec(),
        ),
        (
            dep(&[db]),
            config(&tls_bao.addr, NOWHERE),
            vec![token()],
            vec![],
        ),
        (
            dep(&[db]),
            format!("vault:\n  address: http://127.0.0.1:{not_vault}\n"),
            vec![token()],
            vec![],
        ),
        // Values, templates, env mode.
        (
            dep(&[("secret-db", "vault:secret/data/payments/db#pasword")]),
            jwt.clone(),
            vec![token()],
            vec![],
        ),
        (
            dep(&[
                ("secret-creds", "vault:secret/data/payments/db"),
                ("template-db", "{{ secrets.creds.nofield }}"),
            ]),
            jwt.clone(),
            vec![token()],
            vec![],
        ),
        (
            dep(&[("env-from", "vault:secret/data/payments/keys")]),
            jwt.clone(),
            vec![token()],
            vec![],
        ),
        // AWS.
        (
            with_role(("secret-db", "aws:prod/cnpg/postgres-credential#password")),
            aws.clone(),
            vec![aws_token()],
            vec![],
        ),
        (
            with_role((
                "secret-db",
                "aws:prod/cnpg/postgres-credentials?version-stage=AWSPREVIOUS#password",
            )),
            aws.clone(),
            vec![aws_token()],
            vec![],
        ),
        (
            dep(&[("secret-db", "aws:prod/cnpg/postgres-credentials#password")]),
            aws.clone(),
            vec![],
            vec![("AWS_EC2_METADATA_DISABLED", "true")],
        ),
        (
            with_role(("secret-db", "aws:prod/cnpg/postgres-credentials#password")),
            aws.clone(),
            vec![],
            vec![],
        ),
        (
            with_role(("secret-db", "aws:prod/cnpg/postgres-credentials#password")),
            aws_only_config(&dead),
            vec![aws_token()],
            DEADLINE_3S.to_vec(),
        ),
        (
            dep(&[("secret-db", "aws:prod/cnpg/postgres-credentials#password")]),
            aws_only_config(&dead),
            vec![],
            [DEADLINE_3S.to_vec(), STATIC_AWS_KEYS.to_vec()].concat(),
        ),
        (
            with_role(("secret-token", "aws:deparrow/production/token#k")),
            aws.clone(),
            vec![aws_token()],
            vec![],
        ),
        (
            with_role(("env-from", "aws:deparrow/production/token")),
            aws.clone(),
            vec![aws_token()],
            vec![],
        ),
        (
            with_role(("env-from", "aws:deparrow/production/secrets")),
            aws.clone(),
            vec![aws_token()],
            vec![],
        ),
    ];
    // The README's rows.
    runs.extend([
        (
            deployment(&[prod_db], "app"),
            tls_kubernetes.clone(),
            vec![vault_token(&signer, "other")],
            vec![],
        ),
        (
            deployment(&[prod_db], "app"),
            tls_kubernetes.clone(),
            vec![vault_token(&signer, "app")],
            vec![],
        ),
        (
            deployment(&[prod_db], "app"),
            jwt.clone(),
            vec![vault_token(&signer, "app")],
            vec![],
        ),
        (
            deployment(&[("secret-db", "vault:secret/prod/db#password")], "app"),
            jwt.clone(),
            vec![vault_token(&signer, "app")],
            vec![],
        ),
        (
            dep(&[("secret-db", "vault:secret/data/payments/db#pass")]),
            jwt.clone(),
            vec![token()],
            vec![],
        ),
        (
            with_role(("secret-db", "ssm:/prod/db/password")),
            aws.clone(),
            vec![aws_token()],
            vec![],
        ),
    ]);
    let enforced = dep(&[
        ("secret-app", "aws:deparrow/production/secrets"),
        ("aws-role-arn", &enforced_arn),
    ]);
    runs.push((
        enforced,
        aws_only_config(&enforcing.url),
        vec![aws_token()],
        vec![],
    ));

    // Four at a time; the runs that give up wait for their deadline, so they go first,
    // together.
    runs.sort_by_key(|(_, _, _, env)| !env.contains(&DEADLINE_3S[0]));
    let mut lines = Vec::new();
    for chunk in runs.chunks(4) {
        lines.extend(std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|(manifest, config, tokens, env)| {
                    s.spawn(move || {
                        let run = run_injected(manifest, config, tokens, env);
                        assert_eq!(run.out.status.code(), Some(1), "{}", run.stderr());
                        pod_line(&run)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        }));
    }

    // Run by hand: no VAULT_ADDR, no --out-dir, a plan cut short.
    let prepared = prepare_injected(&dep(&[db]), &jwt, &[token()]);
    let by_hand = |args: &[String], env: &[(&str, Option<String>)]| {
        let mut cmd = util::agent();
        cmd.env_clear();
        for (k, v) in prepared.cmd.get_envs() {
            if let Some(v) = v {
                cmd.env(k, v);
            }
        }
        for (k, v) in env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let out = cmd.args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .unwrap_or_default()
            .to_string()
    };
    let args: Vec<String> = prepared
        .cmd
        .get_args()
        .map(|a| a.to_string_lossy().to_string())
        .collect();
    let plan = prepared
        .cmd
        .get_envs()
        .find(|(k, _)| *k == "SECRET_INJECTOR_PLAN")
        .and_then(|(_, v)| v)
        .unwrap()
        .to_string_lossy()
        .to_string();
    lines.push(by_hand(&args, &[("VAULT_ADDR", None)]));
    lines.push(by_hand(&["init".to_string()], &[]));
    lines.push(by_hand(
        &args,
        &[("SECRET_INJECTOR_PLAN", Some(plan[..11].to_string()))],
    ));
    lines
}

/// A container's usual `PATH`.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `exec` as the pod runs it (the wrapper binary), each failing one way; the temp env
/// file reads as /secret-injector/env.json.
fn exec_lines() -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("env.json");
    let run = |cmd: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_secret-injector-exec"))
            .arg("exec")
            .arg(format!("--env-file={}", env_file.display()))
            .args(["--", cmd])
            .env_clear()
            .env("PATH", PATH)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(127));
        String::from_utf8_lossy(&out.stderr)
            .trim_end()
            .replace(env_file.to_str().unwrap(), "/secret-injector/env.json")
    };
    assert!(
        PATH.split(':')
            .all(|d| !Path::new(d).join("server").exists()),
        "this machine has a program `server`, which the PATH row needs not to exist"
    );
    let mut lines = vec![run("/app/server")];
    std::fs::write(&env_file, r#"{"vars": {"A": "1"}}"#).unwrap();
    lines.push(run("/app/server"));
    lines.push(run("server"));
    std::fs::write(&env_file, r#"{"vars": {"LD_PRELOAD": "/lib/x.so"}}"#).unwrap();
    lines.push(run("/app/server"));
    lines
}

#[test]
fn init_and_exec_lines_are_what_runs_print() {
    let mut lines = init_lines();
    lines.extend(exec_lines());

    let quotes = all_quotes();
    let sections = [
        "The init container fails",
        "Vault / OpenBao",
        "AWS Secrets Manager",
        "Values, templates, env mode",
        "The app does not start in env mode",
    ];
    let rows = quotes_in(&sections, &quotes);
    assert!(rows.len() > 35, "{}", rows.len());
    let (not_run, run): (Vec<&Quote>, Vec<&Quote>) = rows
        .iter()
        .partition(|q| NOT_RUN.iter().any(|(part, _)| q.text.contains(part)));
    let mut bad = unmatched(&run, &lines);
    for (part, _) in NOT_RUN {
        if !not_run.iter().any(|q| q.text.contains(part)) {
            bad.push(format!(
                "NOT_RUN names `{part}`, which no row quotes any more"
            ));
        }
    }
    for q in &not_run {
        let p = {
            let mut p = quote_pattern(&without_ports(q.text.trim()));
            p.insert(0, Tok::Any);
            p
        };
        if lines.iter().any(|l| matches(&p, &without_ports(l))) {
            bad.push(format!(
                "{}: a run prints this row now; remove it from NOT_RUN",
                q.at()
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{} lines are not what the runs print:\n{}\n\nthe runs printed:\n{}",
        bad.len(),
        bad.join("\n"),
        lines.join("\n")
    );
}
