//! Text built without an allocator, for check details; what does not fit is cut.

use core::fmt;

const TEXT_CAPACITY: usize = 640;

pub struct Text {
    buf: [u8; TEXT_CAPACITY],
    len: usize,
}

impl Text {
    pub const fn new() -> Self {
        Text { buf: [0; TEXT_CAPACITY], len: 0 }
    }

    pub fn as_str(&self) -> &str {
        // Only whole UTF-8 strings are appended, and a cut lands on a char boundary.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("(detail not UTF-8)")
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Default for Text {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Write for Text {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = TEXT_CAPACITY - self.len;
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
