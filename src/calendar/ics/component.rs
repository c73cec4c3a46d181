//! The component tree: `BEGIN:NAME` … `END:NAME` blocks and the properties inside them.

use super::lines::{ContentLine, preview};
use super::{IcsError, MAX_DEPTH};

/// One component with its properties and nested components.
#[derive(Clone, Debug, Default)]
pub(crate) struct Component {
    /// Upper-cased name (`VEVENT`).
    pub name: String,
    /// Physical line of its `BEGIN`.
    pub line: usize,
    /// Properties in file order.
    pub properties: Vec<ContentLine>,
    /// Nested components in file order.
    pub children: Vec<Component>,
}

impl Component {
    /// Returns the first property called `name`.
    pub fn property(&self, name: &str) -> Option<&ContentLine> {
        self.properties
            .iter()
            .find(|property| property.name == name)
    }

    /// Returns every property called `name`.
    pub fn properties_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a ContentLine> {
        self.properties
            .iter()
            .filter(move |property| property.name == name)
    }

    /// Returns the nested components called `name`.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Component> {
        self.children.iter().filter(move |child| child.name == name)
    }
}

/// Builds the VCALENDAR component from content lines.
///
/// Only the first VCALENDAR is read; content after its END is ignored. A VEVENT, VTODO or
/// VJOURNAL nested in another one is rejected, because RFC 5545 section 3.6 allows only VALARMs
/// inside them and a nested BEGIN almost always means the previous END was lost.
pub(crate) fn build_calendar(lines: Vec<ContentLine>) -> Result<Component, IcsError> {
    let mut stack: Vec<Component> = Vec::new();
    let mut last_line = 0;

    for line in lines {
        last_line = line.line;
        match line.name.as_str() {
            "BEGIN" => begin(&mut stack, &line)?,
            "END" => {
                if let Some(calendar) = end(&mut stack, &line)? {
                    return Ok(calendar);
                }
            }
            _ => match stack.last_mut() {
                Some(open) => open.properties.push(line),
                None => {
                    return Err(IcsError::Syntax {
                        line: line.line,
                        message: format!("{} appears outside BEGIN:VCALENDAR", line.name),
                    });
                }
            },
        }
    }

    match stack.pop() {
        Some(open) => Err(unclosed(&open, last_line, "the end of the file")),
        None => Err(IcsError::Syntax {
            line: 1,
            message: "no BEGIN:VCALENDAR found".into(),
        }),
    }
}

fn begin(stack: &mut Vec<Component>, line: &ContentLine) -> Result<(), IcsError> {
    let name = line.value.trim().to_ascii_uppercase();
    if stack.is_empty() && name != "VCALENDAR" {
        return Err(IcsError::Syntax {
            line: line.line,
            message: format!("BEGIN:{} appears outside BEGIN:VCALENDAR", preview(&name)),
        });
    }
    if let Some(open) = stack
        .iter()
        .find(|open| is_event_like(&open.name) && is_event_like(&name))
    {
        return Err(unclosed(open, line.line, &format!("BEGIN:{name}")));
    }
    if stack.len() >= MAX_DEPTH {
        return Err(IcsError::Syntax {
            line: line.line,
            message: format!("BEGIN:{name} nests deeper than {MAX_DEPTH} components"),
        });
    }
    stack.push(Component {
        name,
        line: line.line,
        ..Component::default()
    });
    Ok(())
}

/// Closes the innermost component; returns the calendar when its END arrives.
fn end(stack: &mut Vec<Component>, line: &ContentLine) -> Result<Option<Component>, IcsError> {
    let name = line.value.trim().to_ascii_uppercase();
    let Some(open) = stack.pop() else {
        return Err(IcsError::Syntax {
            line: line.line,
            message: format!("END:{} has no matching BEGIN", preview(&name)),
        });
    };
    if open.name != name {
        return Err(unclosed(
            &open,
            line.line,
            &format!("END:{}", preview(&name)),
        ));
    }
    match stack.last_mut() {
        Some(parent) => {
            parent.children.push(open);
            Ok(None)
        }
        None => Ok(Some(open)),
    }
}

fn is_event_like(name: &str) -> bool {
    matches!(name, "VEVENT" | "VTODO" | "VJOURNAL" | "VFREEBUSY")
}

/// Builds the error for `open` still being open when `found` arrives at `line`.
fn unclosed(open: &Component, line: usize, found: &str) -> IcsError {
    let uid = open
        .property("UID")
        .map(|uid| format!(" (UID {:?})", preview(&uid.value)))
        .unwrap_or_default();
    IcsError::Syntax {
        line,
        message: format!(
            "{found} arrives while the {} begun at line {}{uid} has no END:{}",
            open.name, open.line, open.name
        ),
    }
}
