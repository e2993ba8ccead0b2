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
    footer: include_str!("../../templates/footer.md"),
    number: "No. ",
    updated: " · updated ",
    feeds: "Feeds",
    more_issues: "More issues",
    date: DateStyle::Iso,
};

const CHINESE: Strings = Strings {
    tag: "zh",
    footer: include_str!("../../templates/footer.zh-CN.md"),
    number: "第 ",
    updated: " · 更新于 ",
    feeds: "订阅源",
    more_issues: "更多期",
    date: DateStyle::Cjk,
};

/// The languages with built-in words, as `init --language` takes them.
pub const LANGUAGES: [&str; 2] = ["en", "zh-CN"];

/// Whether `language` (a BCP 47 tag) is Chinese in any script or region: where the
/// stylesheets' `:lang(zh)` rules apply.
pub fn is_chinese(language: &str) -> bool {
    language
        .split(['-', '_'])
        .next()
        .is_some_and(|primary| primary.eq_ignore_ascii_case("zh"))
}

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

/// The words of sign-up: the subscribe form (published pages and `gazette serve`), its
/// answers, the confirm page and the confirmation mail.
#[derive(Debug)]
pub struct SignUp {
    pub subscribe: &'static str,
    /// The form's invitation, before the fields.
    pub invite: &'static str,
    pub email_label: &'static str,
    pub name_label: &'static str,
    /// The honeypot's label (read only by bots and screen readers, which are told to skip it).
    pub honeypot_label: &'static str,
    /// The button.
    pub subscribe_button: &'static str,
    pub check_inbox_title: &'static str,
    pub check_inbox: &'static str,
    pub bad_address_title: &'static str,
    pub bad_address: &'static str,
    pub too_many_title: &'static str,
    pub too_many: &'static str,
    pub confirm_title: &'static str,
    /// Above the confirm button: `{title}` is the newsletter's.
    pub confirm_question: &'static str,
    pub confirm_button: &'static str,
    pub confirmed_title: &'static str,
    pub confirmed: &'static str,
    pub invalid_link_title: &'static str,
    pub invalid_link: &'static str,
    pub expired_link: &'static str,
    pub unavailable_title: &'static str,
    pub unavailable: &'static str,
    /// The confirmation mail's subject: `{title}` is the newsletter's.
    pub mail_subject: &'static str,
    /// The mail's paragraphs before the link: `{title}` is the newsletter's.
    pub mail_intro: &'static str,
    /// The mail's link text.
    pub mail_button: &'static str,
    /// After the link: what happens if the reader does nothing.
    pub mail_ignore: &'static str,
}

const SIGN_UP_ENGLISH: SignUp = SignUp {
    subscribe: "Subscribe",
    invite: "Get each new issue by email.",
    email_label: "Email address",
    name_label: "Name (optional)",
    honeypot_label: "Leave this field empty",
    subscribe_button: "Subscribe",
    check_inbox_title: "Check your inbox",
    check_inbox: "If this address can receive the newsletter, a message with a confirmation link is on its way. Open it and confirm to start receiving issues. Nothing is sent until you confirm.",
    bad_address_title: "Check the address",
    bad_address: "That does not look like an email address. Please go back and check it.",
    too_many_title: "Too many requests",
    too_many: "Too many sign-ups from your network. Please try again later.",
    confirm_title: "Confirm your subscription",
    confirm_question: "Start receiving {title} by email?",
    confirm_button: "Confirm subscription",
    confirmed_title: "Subscribed",
    confirmed: "Thank you: you are subscribed. Every email has a link to unsubscribe.",
    invalid_link_title: "Invalid link",
    invalid_link: "This confirmation link is not valid. Copy the whole link from the email, or subscribe again.",
    expired_link: "This confirmation link has expired. Please subscribe again to get a new one.",
    unavailable_title: "Unavailable",
    unavailable: "Sign-ups cannot be taken right now. Please try again in a few minutes.",
    mail_subject: "Confirm your subscription to {title}",
    mail_intro: "Someone, hopefully you, asked to receive {title} at this address. To confirm, open the link below and press the button.",
    mail_button: "Confirm my subscription",
    mail_ignore: "If you did not ask for this, ignore this message: you will not be subscribed and will receive nothing more. The link works for 7 days.",
};

const SIGN_UP_CHINESE: SignUp = SignUp {
    subscribe: "订阅",
    invite: "每期新刊通过电子邮件送达。",
    email_label: "电子邮件地址",
    name_label: "称呼（可不填）",
    honeypot_label: "此栏请留空",
    subscribe_button: "订阅",
    check_inbox_title: "请查收邮件",
    check_inbox: "如果该地址可以接收本刊，一封附有确认链接的邮件正在发出。请打开邮件并确认，之后才会开始收到新刊。确认之前不会发送任何内容。",
    bad_address_title: "请检查地址",
    bad_address: "这看起来不是有效的电子邮件地址，请返回检查。",
    too_many_title: "请求过多",
    too_many: "来自您网络的订阅请求过多，请稍后再试。",
    confirm_title: "确认订阅",
    confirm_question: "开始通过电子邮件接收《{title}》？",
    confirm_button: "确认订阅",
    confirmed_title: "订阅成功",
    confirmed: "谢谢，您已订阅。每封邮件都附有退订链接。",
    invalid_link_title: "链接无效",
    invalid_link: "此确认链接无效。请从邮件中复制完整链接，或重新订阅。",
    expired_link: "此确认链接已过期。请重新订阅以获取新的链接。",
    unavailable_title: "暂不可用",
    unavailable: "目前无法处理订阅，请几分钟后再试。",
    mail_subject: "请确认订阅《{title}》",
    mail_intro: "有人（希望是您本人）申请用此地址接收《{title}》。如需确认，请打开下面的链接并点击按钮。",
    mail_button: "确认订阅",
    mail_ignore: "如果这不是您本人的申请，请忽略此邮件：您不会被订阅，也不会再收到任何邮件。链接 7 天内有效。",
};

/// The sign-up words for `language` (as [`strings`] chooses).
pub fn sign_up(language: &str) -> &'static SignUp {
    if strings(language).tag == "zh" {
        &SIGN_UP_CHINESE
    } else {
        &SIGN_UP_ENGLISH
    }
}

/// The words of the unsubscribe pages `gazette serve` answers an email's link with.
#[derive(Debug)]
pub struct Unsubscribe {
    pub unavailable_title: &'static str,
    pub unavailable: &'static str,
    pub invalid_link_title: &'static str,
    pub invalid_link: &'static str,
    pub confirm_title: &'static str,
    /// Above the button: `{address}` is the reader's address, masked.
    pub confirm_question: &'static str,
    pub confirm_button: &'static str,
    pub unsubscribed_title: &'static str,
    pub unsubscribed: &'static str,
    pub try_again_title: &'static str,
    pub try_again: &'static str,
    pub too_large_title: &'static str,
    pub too_large: &'static str,
    pub not_allowed_title: &'static str,
    pub not_allowed: &'static str,
}

const UNSUBSCRIBE_ENGLISH: Unsubscribe = Unsubscribe {
    unavailable_title: "Unavailable",
    unavailable: "This list cannot take unsubscribes right now. Please reply to the email instead.",
    invalid_link_title: "Invalid link",
    invalid_link: "This unsubscribe link is not valid. Copy the whole link from the email, or reply to it.",
    confirm_title: "Unsubscribe",
    confirm_question: "Stop sending this newsletter to {address}?",
    confirm_button: "Unsubscribe",
    unsubscribed_title: "Unsubscribed",
    unsubscribed: "You are unsubscribed. No more issues will be sent to this address.",
    try_again_title: "Try again",
    try_again: "The unsubscribe could not be recorded. Please try again in a minute.",
    too_large_title: "Too large",
    too_large: "The request is too large. Open the unsubscribe link from the email again.",
    not_allowed_title: "Not allowed",
    not_allowed: "This page can only be opened or its button pressed.",
};

const UNSUBSCRIBE_CHINESE: Unsubscribe = Unsubscribe {
    unavailable_title: "暂不可用",
    unavailable: "目前无法处理退订，请直接回复那封邮件。",
    invalid_link_title: "链接无效",
    invalid_link: "这个退订链接无效。请从邮件中复制完整的链接，或直接回复那封邮件。",
    confirm_title: "退订",
    confirm_question: "确定不再向 {address} 发送本刊吗？",
    confirm_button: "确认退订",
    unsubscribed_title: "已退订",
    unsubscribed: "你已退订，之后的期刊不会再发到这个地址。",
    try_again_title: "请稍后再试",
    try_again: "退订没能记录下来，请过一分钟再试。",
    too_large_title: "请求过大",
    too_large: "请求内容过大。请重新打开邮件中的退订链接。",
    not_allowed_title: "不支持的请求",
    not_allowed: "这个页面只能打开，或点击其中的按钮。",
};

/// The unsubscribe pages' words for `language` (as [`strings`] chooses).
pub fn unsubscribe(language: &str) -> &'static Unsubscribe {
    if strings(language).tag == "zh" {
        &UNSUBSCRIBE_CHINESE
    } else {
        &UNSUBSCRIBE_ENGLISH
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

    #[test]
    fn unsubscribe_words_follow_the_language_and_name_the_address_once() {
        let zh = unsubscribe("zh-CN");
        let en = unsubscribe("en");
        assert_eq!(zh.confirm_title, "退订");
        assert_eq!(zh.confirm_button, "确认退订");
        assert_eq!(zh.unsubscribed, "你已退订，之后的期刊不会再发到这个地址。");
        assert_eq!(en.confirm_button, "Unsubscribe");
        assert_eq!(unsubscribe("fr").confirm_title, "Unsubscribe");
        assert_eq!(unsubscribe("zh-TW").confirm_title, "Unsubscribe");
        for words in [zh, en] {
            assert_eq!(
                words.confirm_question.matches("{address}").count(),
                1,
                "{words:?}"
            );
        }
        // Every Chinese page is in Chinese: no English word left over.
        let all = |w: &Unsubscribe| {
            [
                w.unavailable_title,
                w.unavailable,
                w.invalid_link_title,
                w.invalid_link,
                w.confirm_title,
                w.confirm_question,
                w.confirm_button,
                w.unsubscribed_title,
                w.unsubscribed,
                w.try_again_title,
                w.try_again,
                w.too_large_title,
                w.too_large,
                w.not_allowed_title,
                w.not_allowed,
            ]
        };
        for text in all(zh) {
            let text = text.replace("{address}", "");
            assert!(!text.chars().any(|c| c.is_ascii_alphabetic()), "{text}");
        }
        for (z, e) in all(zh).into_iter().zip(all(en)) {
            assert_ne!(z, e);
            assert!(!z.is_empty() && !e.is_empty());
        }
    }
}
