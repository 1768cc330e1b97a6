//! The answer to S3's ListObjectsV2, parsed: keys with their sizes, and
//! the token of the next page. Pure, unit-tested here.

use quick_xml::events::Event;
use quick_xml::Reader;

/// One page of a listing.
#[derive(Debug, Default, PartialEq)]
pub struct ListPage {
    /// `(key, size)` of each object.
    pub objects: Vec<(String, u64)>,
    /// The token to ask the next page with, when the listing is truncated.
    pub next: Option<String>,
}

/// The element whose text is being read.
#[derive(Clone, Copy, PartialEq)]
enum Field {
    Key,
    Size,
    Truncated,
    NextToken,
    Other,
}

fn field(name: &str, in_contents: bool) -> Field {
    match name {
        "Key" if in_contents => Field::Key,
        "Size" if in_contents => Field::Size,
        "IsTruncated" => Field::Truncated,
        "NextContinuationToken" => Field::NextToken,
        _ => Field::Other,
    }
}

/// The five entities XML predefines (S3 escapes nothing else).
fn entity(name: &str) -> Option<char> {
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        _ => return None,
    })
}

/// What is gathered while reading.
#[derive(Default)]
struct Gathered {
    page: ListPage,
    key: String,
    size: String,
    truncated: String,
    token: String,
}

impl Gathered {
    fn text(&mut self, at: Field) -> Option<&mut String> {
        match at {
            Field::Key => Some(&mut self.key),
            Field::Size => Some(&mut self.size),
            Field::Truncated => Some(&mut self.truncated),
            Field::NextToken => Some(&mut self.token),
            Field::Other => None,
        }
    }

    fn end_object(&mut self) -> Result<(), String> {
        let size = self
            .size
            .trim()
            .parse()
            .map_err(|_| format!("object {:?} has size {:?}", self.key, self.size))?;
        let key = std::mem::take(&mut self.key);
        self.page.objects.push((key, size));
        self.size.clear();
        Ok(())
    }
}

/// Parses a `ListBucketResult` document.
pub fn parse_list(xml: &str) -> Result<ListPage, String> {
    let mut reader = Reader::from_str(xml);
    let mut got = Gathered::default();
    let (mut in_contents, mut at) = (false, Field::Other);
    let mut root_seen = false;
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Start(e) => {
                let name = e.local_name();
                if !root_seen {
                    // Anything else (a proxy's page, another answer) is
                    // not an empty listing.
                    if name.as_ref() != "ListBucketResult" {
                        return Err(format!("not a listing: <{}>", name.as_ref()));
                    }
                    root_seen = true;
                }
                in_contents |= name.as_ref() == "Contents";
                at = field(name.as_ref(), in_contents);
            }
            Event::Text(t) => {
                if let Some(s) = got.text(at) {
                    s.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref().map_err(|e| e.to_string())? {
                    Some(c) => c,
                    None => entity(&r).ok_or("unknown entity in the listing")?,
                };
                if let Some(s) = got.text(at) {
                    s.push(c);
                }
            }
            Event::End(e) => {
                if e.local_name().as_ref() == "Contents" {
                    got.end_object()?;
                    in_contents = false;
                }
                at = Field::Other;
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !root_seen {
        return Err("not a listing: no ListBucketResult".into());
    }
    if got.truncated.trim() == "true" {
        if got.token.is_empty() {
            return Err("a truncated listing without a continuation token".into());
        }
        got.page.next = Some(got.token);
    }
    Ok(got.page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_with_a_next_one() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>b</Name><Prefix>r/keys/</Prefix><KeyCount>2</KeyCount>
  <IsTruncated>true</IsTruncated><NextContinuationToken>t&amp;1==</NextContinuationToken>
  <Contents><Key>r/keys/ab</Key><Size>460</Size><ETag>"x"</ETag></Contents>
  <Contents><Key>r/keys/a&amp;b</Key><LastModified>2026</LastModified><Size>7</Size></Contents>
</ListBucketResult>"#;
        let page = parse_list(xml).unwrap();
        assert_eq!(
            page.objects,
            vec![("r/keys/ab".into(), 460), ("r/keys/a&b".into(), 7)]
        );
        assert_eq!(page.next.as_deref(), Some("t&1=="));
    }

    #[test]
    fn the_last_page_and_an_empty_one() {
        let xml = "<ListBucketResult><IsTruncated>false</IsTruncated>\
                   <Contents><Key>k</Key><Size>0</Size></Contents></ListBucketResult>";
        let page = parse_list(xml).unwrap();
        assert_eq!(page.objects, vec![("k".into(), 0)]);
        assert_eq!(page.next, None);
        let empty = parse_list("<ListBucketResult><KeyCount>0</KeyCount></ListBucketResult>");
        assert_eq!(empty.unwrap(), ListPage::default());
    }

    #[test]
    fn bad_answers_are_errors() {
        let bad_size =
            "<ListBucketResult><Contents><Key>k</Key><Size>x</Size></Contents></ListBucketResult>";
        assert!(parse_list(bad_size).is_err());
        let no_token = "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>";
        assert!(parse_list(no_token).is_err());
        assert!(parse_list("<a><b></a>").is_err());
        assert!(parse_list("<html><body>proxy</body></html>").is_err());
        assert!(parse_list("").is_err());
    }
}
