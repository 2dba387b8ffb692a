//! Keyset pagination shared by every List call.

use plinth_platform::store::Page;
use uuid::Uuid;

pub const DEFAULT_PAGE_SIZE: i32 = 50;
pub const MAX_PAGE_SIZE: i32 = 500;

/// A validated page request.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub after: Option<Uuid>,
    pub size: i64,
}

impl PageRequest {
    /// The first page of the default size.
    pub fn first() -> PageRequest {
        PageRequest {
            after: None,
            size: i64::from(DEFAULT_PAGE_SIZE),
        }
    }

    /// From `page_size` (0 means the default) and an opaque `page_token`;
    /// on error, the field and what is wrong with it.
    pub fn parse(
        page_size: i32,
        page_token: &str,
    ) -> Result<PageRequest, (&'static str, &'static str)> {
        let size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            1..=MAX_PAGE_SIZE => page_size,
            _ => return Err(("page_size", "must be between 0 and 500")),
        };
        let after = match page_token {
            "" => None,
            token => Some(
                (token.len() == 32)
                    .then(|| Uuid::try_parse(token).ok())
                    .flatten()
                    .ok_or(("page_token", "is not a token from a previous response"))?,
            ),
        };
        Ok(PageRequest {
            after,
            size: i64::from(size),
        })
    }

    /// One row more than the page, to learn whether another page follows.
    pub fn store_page(self) -> Page {
        Page {
            after: self.after,
            limit: self.size + 1,
        }
    }

    /// Trims the extra row and returns the items with the next page token.
    pub fn finish<T>(self, mut rows: Vec<T>, id_of: impl Fn(&T) -> Uuid) -> (Vec<T>, String) {
        let more = rows.len() as i64 > self.size;
        rows.truncate(self.size as usize);
        let next = match rows.last() {
            Some(last) if more => id_of(last).simple().to_string(),
            _ => String::new(),
        };
        (rows, next)
    }
}
