//! Splits a cmdlet script into commands of positioned tokens, with the PowerShell rules
//! Exchange administrators rely on: quotes, `#` and `<# #>` comments, backtick line
//! continuation, `;` separators, `-Param:value`, and — as in Microsoft's published
//! examples — a line that starts with `-` continuing the previous command.

use std::fmt;

/// A 1-based line and column in the script.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// A value as written: a bare word, a quoted string, or a `$variable`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Word(String),
    Quoted(String),
    Variable(String),
}

/// One token of a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// `-Name`, or `-Name:value` with the value attached.
    Parameter {
        name: String,
        attached: Option<(Value, Pos)>,
    },
    Value(Value),
    Pipe,
}

/// A token and where it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    pub pos: Pos,
}

/// A lexical error: where, and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LexError {
    pub pos: Pos,
    pub message: String,
}

/// Splits `script` into commands (each a non-empty token list).
pub fn tokenize(script: &str) -> Result<Vec<Vec<Token>>, LexError> {
    Lexer {
        chars: script.chars().collect(),
        i: 0,
        line: 1,
        column: 1,
    }
    .run()
}

struct Lexer {
    chars: Vec<char>,
    i: usize,
    line: u32,
    column: u32,
}

impl Lexer {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.i + n).copied()
    }

    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.column,
        }
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn error<T>(&self, pos: Pos, message: impl Into<String>) -> Result<T, LexError> {
        Err(LexError {
            pos,
            message: message.into(),
        })
    }

    fn run(mut self) -> Result<Vec<Vec<Token>>, LexError> {
        let mut commands = Vec::new();
        let mut current: Vec<Token> = Vec::new();
        // Newlines seen since the last token of `current`: one newline followed by a
        // line starting with `-` continues the command; anything else ends it.
        let mut newlines = 0;
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' | '\r' | '\u{feff}' => {
                    self.bump();
                }
                '\n' => {
                    self.bump();
                    newlines += 1;
                }
                ';' => {
                    self.bump();
                    finish(&mut commands, &mut current);
                    newlines = 0;
                }
                '#' => self.skip_line_comment(),
                '<' if self.peek_at(1) == Some('#') => self.skip_block_comment()?,
                '`' if matches!(self.peek_at(1), Some('\n')) => {
                    self.bump();
                    self.bump();
                }
                '`' if self.peek_at(1) == Some('\r') && self.peek_at(2) == Some('\n') => {
                    self.bump();
                    self.bump();
                    self.bump();
                }
                _ => {
                    let token = self.token()?;
                    let continues = newlines == 0
                        || (newlines == 1 && matches!(token.kind, TokenKind::Parameter { .. }));
                    if !continues {
                        finish(&mut commands, &mut current);
                    }
                    newlines = 0;
                    current.push(token);
                }
            }
        }
        finish(&mut commands, &mut current);
        Ok(commands)
    }

    fn skip_line_comment(&mut self) {
        while self.peek().is_some_and(|c| c != '\n') {
            self.bump();
        }
    }

    fn skip_block_comment(&mut self) -> Result<(), LexError> {
        let start = self.pos();
        self.bump();
        self.bump();
        while let Some(c) = self.bump() {
            if c == '#' && self.peek() == Some('>') {
                self.bump();
                return Ok(());
            }
        }
        self.error(start, "The string is missing the terminator: #>.")
    }

    fn token(&mut self) -> Result<Token, LexError> {
        let pos = self.pos();
        let c = self.peek().expect("token() is called on a character");
        let kind = if c == '|' {
            self.bump();
            TokenKind::Pipe
        } else if c == '-' && self.peek_at(1).is_some_and(|n| n.is_ascii_alphabetic()) {
            self.bump();
            let name = self.take_while(|c| c.is_ascii_alphanumeric() || c == '_');
            let attached = if self.peek() == Some(':') {
                self.bump();
                while matches!(self.peek(), Some(' ' | '\t')) {
                    self.bump();
                }
                let vpos = self.pos();
                match self.peek() {
                    None | Some('\n' | '\r' | ';' | '|' | '#') => {
                        return self
                            .error(vpos, format!("Missing an argument for parameter '{name}'."));
                    }
                    _ => Some((self.value()?, vpos)),
                }
            } else {
                None
            };
            TokenKind::Parameter { name, attached }
        } else {
            TokenKind::Value(self.value()?)
        };
        Ok(Token { kind, pos })
    }

    fn value(&mut self) -> Result<Value, LexError> {
        let pos = self.pos();
        match self.peek() {
            Some('\'') => {
                self.bump();
                self.quoted('\'', pos).map(Value::Quoted)
            }
            Some('"') => {
                self.bump();
                self.quoted('"', pos).map(Value::Quoted)
            }
            Some('$') => {
                self.bump();
                let name = self.take_while(|c| c.is_ascii_alphanumeric() || c == '_');
                if name.is_empty() {
                    return self.error(
                        pos,
                        "Expressions are not supported in exgate cmdlet scripts; use a literal value.",
                    );
                }
                Ok(Value::Variable(name))
            }
            Some('(' | '@' | '{' | '[') => self.error(
                pos,
                "Expressions are not supported in exgate cmdlet scripts; use a literal value.",
            ),
            _ => self.word().map(Value::Word),
        }
    }

    /// A bare word, up to white space or a command separator; backtick escapes a char.
    fn word(&mut self) -> Result<String, LexError> {
        let mut out = String::new();
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' | '\r' | '\n' | ';' | '|' => break,
                '`' => {
                    self.bump();
                    match self.bump() {
                        Some('\n') | None => break,
                        Some(e) => out.push(e),
                    }
                }
                _ => {
                    out.push(c);
                    self.bump();
                }
            }
        }
        Ok(out)
    }

    /// A quoted string body: `''` (or `""`) and, in double quotes, backtick escape a quote.
    fn quoted(&mut self, quote: char, start: Pos) -> Result<String, LexError> {
        let mut out = String::new();
        loop {
            match self.bump() {
                None => {
                    return self.error(
                        start,
                        format!("The string is missing the terminator: {quote}."),
                    );
                }
                Some(c) if c == quote => {
                    if self.peek() == Some(quote) {
                        self.bump();
                        out.push(quote);
                    } else {
                        return Ok(out);
                    }
                }
                Some('`') if quote == '"' => {
                    if let Some(e) = self.bump() {
                        out.push(e);
                    }
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> String {
        let mut out = String::new();
        while let Some(c) = self.peek().filter(|c| keep(*c)) {
            out.push(c);
            self.bump();
        }
        out
    }
}

fn finish(commands: &mut Vec<Vec<Token>>, current: &mut Vec<Token>) {
    if !current.is_empty() {
        commands.push(std::mem::take(current));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shapes(script: &str) -> Vec<Vec<String>> {
        tokenize(script)
            .unwrap()
            .into_iter()
            .map(|cmd| {
                cmd.into_iter()
                    .map(|t| match t.kind {
                        TokenKind::Parameter { name, attached } => match attached {
                            Some((v, _)) => format!("-{name}:{v:?}"),
                            None => format!("-{name}"),
                        },
                        TokenKind::Value(v) => format!("{v:?}"),
                        TokenKind::Pipe => "|".into(),
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_line_starting_with_a_dash_continues_the_command() {
        let s = shapes("New-AuthenticationPolicy -Name A -X:$false\n-Y:$false\nSet-User u");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].len(), 5);
        assert_eq!(s[0][4], "-Y:Variable(\"false\")");
    }

    #[test]
    fn a_blank_line_ends_the_command_even_before_a_dash_line() {
        assert_eq!(shapes("Get-X -A\n\n-B").len(), 2);
    }

    #[test]
    fn backtick_continues_and_semicolon_separates() {
        assert_eq!(shapes("Get-X `\n  B; Get-Y\r\nGet-Z `\r\n C").len(), 3);
        assert_eq!(shapes("Get-X `\n  B")[0].len(), 2);
    }

    #[test]
    fn comments_are_skipped() {
        let s = shapes("# intro\nGet-X A # trailing\n<# block\n spanning #> Get-Y");
        assert_eq!(
            s,
            vec![
                vec!["Word(\"Get-X\")", "Word(\"A\")"],
                vec!["Word(\"Get-Y\")"]
            ]
        );
    }

    #[test]
    fn quotes_and_escapes() {
        let s = shapes(r#"X 'it''s' "say ""hi"" `"ok`"" -P:'v w' -Q: $true"#);
        assert_eq!(
            s[0][1..],
            [
                "Quoted(\"it's\")",
                "Quoted(\"say \\\"hi\\\" \\\"ok\\\"\")",
                "-P:Quoted(\"v w\")",
                "-Q:Variable(\"true\")"
            ]
        );
    }

    #[test]
    fn positions_are_one_based_lines_and_columns() {
        let cmds = tokenize("Get-X\n  -Y").unwrap();
        assert_eq!(cmds[0][1].pos, Pos { line: 2, column: 3 });
    }

    #[test]
    fn unterminated_strings_and_expressions_are_errors() {
        let e = tokenize("X 'abc").unwrap_err();
        assert_eq!((e.pos.line, e.pos.column), (1, 3));
        assert!(tokenize("X -P:(1+1)").is_err());
        assert!(tokenize("X -P:").is_err());
        assert!(tokenize("X $(Get-Date)").is_err());
        assert!(tokenize("<# never closed").is_err());
    }

    #[test]
    fn negative_numbers_and_dashes_inside_words_are_values() {
        let s = shapes("X -5 a-b");
        assert_eq!(s[0][1..], ["Word(\"-5\")", "Word(\"a-b\")"]);
    }
}
