//! gazette's built-in words, in the newsletter's language (`newsletter.language`): the email
//! footer gazette ships, the issue number, dates, and the labels of the web pages. A small
//! table keyed by language; a language it does not know gets English.

use chrono::Datelike;

/// The built-in words of one language.
#[derive(Debug)]
pub struct Strings {
    /// The language's primary tag, e.g. `zh`.
    pub tag: &'static str,
    /// The footer gazette ships (`templates/footer.md`), with its placeholders.
    pub footer: &'static str,
    /// Before an issue's number: `No. 3`.
    pub number: &'static str,
    /// Between a date and the date an issue was updated.
    pub updated: &'static str,
    /// The label of the feed links.
    pub feeds: &'static str,
    /// The label of the previous/next links.
    pub more_issues: &'static str,
    /// The format of a date: `%Y-%m-%d`, or `{y}年{m}月{d}日`.
    date: DateStyle,
}

#[derive(Debug)]
enum DateStyle {
    Iso,
    /// Year, month, day without leading zeros, each followed by its character.
    Cjk,
}

const ENGLISH: Strings = Strings {
    tag: "en",
    footer: include_str!("../templates/footer.md"),
    number: "No. ",
    updated: " · updated ",
    feeds: "Feeds",
    more_issues: "More issues",
    date: DateStyle::Iso,
};

const CHINESE: Strings = Strings {
    tag: "zh",
    footer: include_str!("../templates/footer.zh-CN.md"),
    number: "第 ",
    updated: " · 更新于 ",
    feeds: "订阅源",
    more_issues: "更多期",
    date: DateStyle::Cjk,
};

/// The languages with built-in words, as `init --language` takes them.
pub const LANGUAGES: [&str; 2] = ["en", "zh-CN"];

/// The words for `language` (a BCP 47 tag): Simplified Chinese for `zh`, `zh-CN`, `zh-Hans`,
/// `zh-SG`; English for anything else.
pub fn strings(language: &str) -> &'static Strings {
    let lower = language.to_ascii_lowercase();
    let mut subtags = lower.split(['-', '_']);
    match (subtags.next(), subtags.next()) {
        (Some("zh"), None | Some("cn" | "hans" | "sg")) => &CHINESE,
        _ => &ENGLISH,
    }
}

impl Strings {
    /// A date as this language writes it: `2023-03-31` or `2023年3月31日`.
    pub fn date(&self, date: impl Datelike) -> String {
        match self.date {
            DateStyle::Iso => format!("{:04}-{:02}-{:02}", date.year(), date.month(), date.day()),
            DateStyle::Cjk => format!("{}年{}月{}日", date.year(), date.month(), date.day()),
        }
    }

    /// What stands before and after struck-out text in the plain-text email.
    pub fn struck(&self) -> (&'static str, &'static str) {
        if self.tag == "zh" {
            ("[删去：", "]")
        } else {
            ("[struck out: ", "]")
        }
    }

    /// The text of the unsubscribe link gazette adds to a footer that has none.
    pub fn unsubscribe(&self) -> &'static str {
        if self.tag == "zh" {
            "退订"
        } else {
            "Unsubscribe"
        }
    }

    /// An issue's number: `No. 3` or `第 3 期`.
    pub fn issue_number(&self, n: impl std::fmt::Display) -> String {
        match self.date {
            DateStyle::Iso => format!("{}{n}", self.number),
            DateStyle::Cjk => format!("{}{n} 期", self.number),
        }
    }

    /// The footer for a newsletter whose `templates/footer.md` is `template`: the editor's own
    /// text as written, gazette's shipped English footer in this language.
    pub fn footer<'a>(&self, template: &'a str) -> &'a str {
        if template.trim_end() == ENGLISH.footer.trim_end() {
            self.footer
        } else {
            template
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_fall_back_to_english() {
        assert_eq!(strings("zh-CN").tag, "zh");
        assert_eq!(strings("zh-Hans").tag, "zh");
        assert_eq!(strings("zh").tag, "zh");
        assert_eq!(strings("zh-TW").tag, "en");
        assert_eq!(strings("en-GB").tag, "en");
        assert_eq!(strings("fr").tag, "en");
        let d = chrono::NaiveDate::from_ymd_opt(2023, 3, 1).unwrap();
        assert_eq!(strings("zh-CN").date(d), "2023年3月1日");
        assert_eq!(strings("en").date(d), "2023-03-01");
        assert_eq!(strings("zh-CN").issue_number(3), "第 3 期");
        assert_eq!(strings("en").issue_number(3), "No. 3");
    }
}
