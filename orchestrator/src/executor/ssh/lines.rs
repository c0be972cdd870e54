//! A command's output bytes as log lines, for the task's log.

use crate::domain::task::LogStream;
use crate::executor::TaskEvent;

/// Longest log line sent as one event; longer lines are split.
const MAX_LINE: usize = 8 * 1024;

/// Splits a byte stream into log lines.
pub(super) struct Lines {
    stream: LogStream,
    buf: Vec<u8>,
}

impl Lines {
    pub(super) fn new(stream: LogStream) -> Self {
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, data: &[u8], out: &mut Vec<TaskEvent>) {
        self.buf.extend_from_slice(data);
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            self.emit(&line[..line.len() - 1], out);
        }
        while self.buf.len() >= MAX_LINE {
            let line: Vec<u8> = self.buf.drain(..MAX_LINE).collect();
            self.emit(&line, out);
        }
    }

    pub(super) fn finish(&mut self, out: &mut Vec<TaskEvent>) {
        if !self.buf.is_empty() {
            let line = std::mem::take(&mut self.buf);
            self.emit(&line, out);
        }
    }

    fn emit(&self, line: &[u8], out: &mut Vec<TaskEvent>) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        out.push(TaskEvent::Log {
            stream: self.stream,
            line: String::from_utf8_lossy(line).into_owned(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_and_cap() {
        let mut lines = Lines::new(LogStream::Stdout);
        let mut out = Vec::new();
        lines.push(b"one\ntw", &mut out);
        lines.push(b"o\r\nthree", &mut out);
        lines.finish(&mut out);
        let texts: Vec<String> = out
            .into_iter()
            .map(|e| match e {
                TaskEvent::Log { line, .. } => line,
                TaskEvent::Status(s) => s,
            })
            .collect();
        assert_eq!(texts, ["one", "two", "three"]);
        let mut out = Vec::new();
        lines.push(&vec![b'x'; MAX_LINE + 10], &mut out);
        assert_eq!(out.len(), 1);
    }
}
