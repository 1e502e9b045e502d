//! A small line-oriented regular expression matcher for serial logs, so the harness needs
//! no regex crate. It matches within one line at a time (as grep does) and knows:
//! literals, `.`, classes `[a-z_]` / `[^...]`, escapes `\d \w \s \D \W \S` and escaped
//! metacharacters, groups `( )` / `(?: )` with `|`, the greedy quantifiers `* + ?` and
//! `{m}` `{m,}` `{m,n}`, the line anchors `^ $`, and a leading `(?i)` for a
//! case-insensitive (ASCII) match. Captures, lazy quantifiers and backreferences are not
//! supported: `Regex::new` panics on what it cannot parse.

use std::cell::Cell;
use std::fmt;

#[derive(Clone, Debug)]
enum Node {
    Byte(u8),
    Any,
    Class(Vec<(u8, u8)>, bool),
    LineStart,
    LineEnd,
    Group(Vec<Vec<Node>>),
    Repeat(Box<Node>, u32, Option<u32>),
}

#[derive(Clone)]
pub struct Regex {
    src: String,
    alts: Vec<Vec<Node>>,
    icase: bool,
}

impl fmt::Debug for Regex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}/", self.src)
    }
}

impl fmt::Display for Regex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}/", self.src)
    }
}

/// Shorthand for `Regex::new`.
pub fn re(pattern: &str) -> Regex {
    Regex::new(pattern)
}

struct Parser<'a> {
    p: &'a [u8],
    i: usize,
    src: &'a str,
}

impl Parser<'_> {
    fn fail(&self, what: &str) -> ! {
        panic!("regex {:?}: {what} at byte {}", self.src, self.i)
    }

    fn peek(&self) -> Option<u8> {
        self.p.get(self.i).copied()
    }

    fn alts(&mut self) -> Vec<Vec<Node>> {
        let mut alts = vec![self.seq()];
        while self.peek() == Some(b'|') {
            self.i += 1;
            alts.push(self.seq());
        }
        alts
    }

    fn seq(&mut self) -> Vec<Node> {
        let mut seq = Vec::new();
        while let Some(c) = self.peek() {
            if c == b'|' || c == b')' {
                break;
            }
            let atom = self.atom();
            seq.push(self.quantified(atom));
        }
        seq
    }

    fn number(&mut self) -> Option<u32> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        std::str::from_utf8(&self.p[start..self.i]).unwrap().parse().ok()
    }

    fn quantified(&mut self, atom: Node) -> Node {
        let (min, max) = match self.peek() {
            Some(b'*') => (0, None),
            Some(b'+') => (1, None),
            Some(b'?') => (0, Some(1)),
            Some(b'{') => {
                self.i += 1;
                let min = self.number().unwrap_or_else(|| self.fail("expected a number after '{'"));
                let max = if self.peek() == Some(b',') {
                    self.i += 1;
                    self.number()
                } else {
                    Some(min)
                };
                if self.peek() != Some(b'}') {
                    self.fail("expected '}'");
                }
                (min, max)
            }
            _ => return atom,
        };
        self.i += 1;
        if matches!(atom, Node::LineStart | Node::LineEnd) {
            self.fail("quantified anchor");
        }
        if matches!(self.peek(), Some(b'?' | b'+')) {
            self.fail("lazy and possessive quantifiers are not supported");
        }
        Node::Repeat(Box::new(atom), min, max)
    }

    fn escape(&mut self) -> Node {
        let c = self.peek().unwrap_or_else(|| self.fail("trailing backslash"));
        self.i += 1;
        let (ranges, negated): (&[(u8, u8)], bool) = match c {
            b'd' => (DIGIT, false),
            b'D' => (DIGIT, true),
            b'w' => (WORD, false),
            b'W' => (WORD, true),
            b's' => (SPACE, false),
            b'S' => (SPACE, true),
            b'n' => return Node::Byte(b'\n'),
            b't' => return Node::Byte(b'\t'),
            b'r' => return Node::Byte(b'\r'),
            c if c.is_ascii_alphanumeric() => self.fail("unknown escape"),
            c => return Node::Byte(c),
        };
        Node::Class(ranges.to_vec(), negated)
    }

    fn class(&mut self) -> Node {
        let negated = self.peek() == Some(b'^');
        if negated {
            self.i += 1;
        }
        let mut ranges = Vec::new();
        let mut first = true;
        loop {
            let c = self.peek().unwrap_or_else(|| self.fail("unterminated '['"));
            if c == b']' && !first {
                self.i += 1;
                break;
            }
            first = false;
            self.i += 1;
            let lo = if c == b'\\' {
                match self.escape() {
                    Node::Byte(b) => b,
                    Node::Class(r, false) => {
                        ranges.extend(r);
                        continue;
                    }
                    _ => self.fail("negated class escape inside '[...]'"),
                }
            } else {
                c
            };
            if self.peek() == Some(b'-') && self.p.get(self.i + 1).is_some_and(|&n| n != b']') {
                self.i += 1;
                let mut hi = self.peek().unwrap();
                self.i += 1;
                if hi == b'\\' {
                    hi = self.peek().unwrap_or_else(|| self.fail("trailing backslash"));
                    self.i += 1;
                }
                if hi < lo {
                    self.fail("reversed range");
                }
                ranges.push((lo, hi));
            } else {
                ranges.push((lo, lo));
            }
        }
        Node::Class(ranges, negated)
    }

    fn atom(&mut self) -> Node {
        let c = self.peek().unwrap();
        self.i += 1;
        match c {
            b'(' => {
                if self.p[self.i..].starts_with(b"?:") {
                    self.i += 2;
                } else if self.peek() == Some(b'?') {
                    self.fail("unsupported group flag");
                }
                let alts = self.alts();
                if self.peek() != Some(b')') {
                    self.fail("unbalanced '('");
                }
                self.i += 1;
                Node::Group(alts)
            }
            b'[' => self.class(),
            b'.' => Node::Any,
            b'^' => Node::LineStart,
            b'$' => Node::LineEnd,
            b'\\' => self.escape(),
            b'*' | b'+' | b'?' | b'{' => self.fail("nothing to repeat"),
            c => Node::Byte(c),
        }
    }
}

const DIGIT: &[(u8, u8)] = &[(b'0', b'9')];
const WORD: &[(u8, u8)] = &[(b'0', b'9'), (b'a', b'z'), (b'A', b'Z'), (b'_', b'_')];
const SPACE: &[(u8, u8)] = &[(b' ', b' '), (b'\t', b'\r')];

/// One line handed to the matcher: `start` says the slice begins a line (for `^`),
/// `complete` that its newline has been seen (for `$`).
struct Line<'a> {
    text: &'a [u8],
    start: bool,
    complete: bool,
}

impl Regex {
    pub fn new(pattern: &str) -> Regex {
        let (icase, body) = match pattern.strip_prefix("(?i)") {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        let mut parser = Parser { p: body.as_bytes(), i: 0, src: pattern };
        let alts = parser.alts();
        if parser.i != parser.p.len() {
            parser.fail("unbalanced ')'");
        }
        Regex { src: pattern.into(), alts, icase }
    }

    pub fn as_str(&self) -> &str {
        &self.src
    }

    fn byte_eq(&self, a: u8, b: u8) -> bool {
        if self.icase {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    }

    fn in_class(&self, ranges: &[(u8, u8)], c: u8) -> bool {
        let hit = |c: u8| ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi);
        hit(c) || (self.icase && (hit(c.to_ascii_lowercase()) || hit(c.to_ascii_uppercase())))
    }

    fn m_seq(&self, seq: &[Node], l: &Line, i: usize, k: &dyn Fn(usize) -> bool) -> bool {
        match seq.split_first() {
            None => k(i),
            Some((n, rest)) => self.m_node(n, l, i, &|j| self.m_seq(rest, l, j, k)),
        }
    }

    fn m_node(&self, n: &Node, l: &Line, i: usize, k: &dyn Fn(usize) -> bool) -> bool {
        let c = l.text.get(i).copied();
        match n {
            Node::Byte(b) => c.is_some_and(|c| self.byte_eq(c, *b)) && k(i + 1),
            Node::Any => c.is_some() && k(i + 1),
            Node::Class(ranges, negated) => c.is_some_and(|c| self.in_class(ranges, c) != *negated) && k(i + 1),
            Node::LineStart => i == 0 && l.start && k(i),
            Node::LineEnd => i == l.text.len() && l.complete && k(i),
            Node::Group(alts) => alts.iter().any(|s| self.m_seq(s, l, i, k)),
            Node::Repeat(inner, min, max) => self.m_rep(inner, *min, *max, l, i, k),
        }
    }

    fn m_rep(&self, inner: &Node, min: u32, max: Option<u32>, l: &Line, i: usize, k: &dyn Fn(usize) -> bool) -> bool {
        if max != Some(0) {
            let more = |j: usize| {
                // An iteration that consumes nothing can only help to reach `min`.
                (j != i || min > 0) && self.m_rep(inner, min.saturating_sub(1), max.map(|m| m - 1), l, j, k)
            };
            if self.m_node(inner, l, i, &more) {
                return true;
            }
        }
        min == 0 && k(i)
    }

    /// The leftmost match in one line, as (start, end) offsets into it.
    fn find_in_line(&self, l: &Line) -> Option<(usize, usize)> {
        let end = Cell::new(0);
        (0..=l.text.len()).find_map(|s| {
            self.alts
                .iter()
                .any(|seq| {
                    self.m_seq(seq, l, s, &|e| {
                        end.set(e);
                        true
                    })
                })
                .then(|| (s, end.get()))
        })
    }

    /// The leftmost match in `hay[from..]`, searched line by line, as byte offsets into
    /// `hay`. The last line counts as incomplete (`$` cannot match it) unless it ends in
    /// a newline.
    pub fn find_bytes(&self, hay: &[u8], from: usize) -> Option<(usize, usize)> {
        let mut start = from;
        while start <= hay.len() {
            let nl = hay[start..].iter().position(|&c| c == b'\n');
            let stop = nl.map_or(hay.len(), |n| start + n);
            let line =
                Line { text: &hay[start..stop], start: start == 0 || hay[start - 1] == b'\n', complete: nl.is_some() };
            if let Some((s, e)) = self.find_in_line(&line) {
                return Some((start + s, start + e));
            }
            nl?;
            start = stop + 1;
        }
        None
    }

    /// The first match in `text` as byte offsets, matching each line as a complete line.
    pub fn find_span(&self, text: &str) -> Option<(usize, usize)> {
        let mut from = 0;
        for line in text.split_inclusive('\n') {
            let body = line.strip_suffix('\n').unwrap_or(line);
            let l = Line { text: body.as_bytes(), start: true, complete: true };
            if let Some((s, e)) = self.find_in_line(&l) {
                return Some((from + s, from + e));
            }
            from += line.len();
        }
        None
    }

    /// The text of the first match in `text` (empty if it does not fall on characters).
    pub fn find<'t>(&self, text: &'t str) -> Option<&'t str> {
        self.find_span(text).map(|(s, e)| text.get(s..e).unwrap_or(""))
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.find_span(text).is_some()
    }

    /// Every line of `text` with a match (without its newline).
    pub fn matching_lines<'t>(&self, text: &'t str) -> Vec<&'t str> {
        text.lines().filter(|line| self.is_match(line)).collect()
    }
}
