#!/usr/bin/env python3
"""Writes a synthetic newsletter archive for the publish benchmark, twice: as a gazette
newsletter and as the same content laid out as a Hugo site.

    python3 bench/generate.py N OUT_DIR

makes OUT_DIR/gazette (gazette.toml and templates/ copied from the sample, issues/*.md) and
OUT_DIR/hugo (hugo.toml, layouts/, content/posts/*.md). Each issue is about 15 KB of mixed
Chinese and English Markdown with headings, absolute and relative (`issue-00042.md`) links,
bare URLs, lists, quotes, code blocks, tables, bold and italic. Deterministic: issue k is the
same bytes whatever N is, so the 600-issue archive is a prefix of the 10,000-issue one.
"""

import datetime
import pathlib
import random
import shutil
import sys

SEED = "gazette-publish-bench-1"
TARGET_BYTES = 14_000
REPO = pathlib.Path(__file__).resolve().parent.parent

ZH = [
    "这篇论文提出了一种新的训练方法", "在多个基准上都取得了不错的结果", "作者认为关键在于数据的质量",
    "实验部分写得相当扎实", "值得注意的是", "换句话说", "与此前的工作相比", "模型的参数量并不大",
    "推理速度提升了将近一倍", "代码和权重都已经开源", "我们在自己的数据上复现了一遍",
    "结论和论文里说的基本一致", "不过消融实验还不够充分", "这也是扩散模型最受诟病的地方",
    "多模态语言模型是今年最热的方向之一", "机器翻译的质量已经接近专业译者", "读论文不必求全",
    "挑一两篇读透", "胜过把十篇摘要都扫一遍", "附录里的细节比正文更有意思",
    "训练数据超过一万亿个词元", "全部来自公开数据集", "既没有做指令微调，也没有经过人类反馈强化学习",
    "更适合作为自己微调的起点", "上下文学习能承载相当复杂的信息", "评测方法本身也值得商榷",
    "这个结果有些出人意料", "工程上的取舍写得很清楚", "如果只读一篇，就读这一篇",
    "作者团队来自学术界和工业界", "数据集的构建过程很有参考价值", "损失函数的设计颇为巧妙",
    "视觉编码器沿用了现成的结构", "语言模型只提供高层的动作指令", "底层控制仍然依赖传统策略",
]
EN = [
    "transformer", "diffusion", "attention", "benchmark", "tokenizer", "fine-tuning", "RLHF",
    "zero-shot", "few-shot", "in-context learning", "latent space", "sampling", "distillation",
    "scaling law", "retrieval", "embedding", "encoder", "decoder", "LoRA", "quantization",
    "GPU", "throughput", "latency", "dataset", "evaluation", "baseline", "ablation",
]
EN_TITLE = [
    "Efficient", "Scalable", "Open", "Foundation", "Language", "Models", "Consistency",
    "Multimodal", "Embodied", "Vision", "Learning", "Instruction", "Retrieval", "Augmented",
    "Generation", "Sparse", "Mixture", "Experts", "Reasoning", "Agents", "Diffusion", "Policies",
]
NAMES = [
    "Hugo Touvron", "Yang Song", "Danny Driess", "Fei Xia", "Seonghyeon Ye", "Amr Hendy",
    "Lianghua Huang", "Shikun Liu", "Xiangning Chen", "Ilya Sutskever", "Marie-Anne Lachaux",
    "Timothée Lacroix", "Baptiste Rozière", "Yevgen Chebotar", "Andy Zeng", "Pete Florence",
]
TAGS = ["LLM", "多模态", "扩散模型", "机器翻译", "强化学习", "检索", "评测", "开源", "智能体", "量化"]
CODE = [
    ("python", "import torch\n\ndef sample(model, x, steps=4):\n    for t in reversed(range(steps)):\n        x = model(x, t)  # 一步去噪\n    return x\n"),
    ("rust", "fn main() {\n    let tokens: Vec<&str> = \"你好 world\".split(' ').collect();\n    println!(\"{} tokens <ok> & done\", tokens.len());\n}\n"),
    ("bash", "pip install transformers==4.27.0\npython train.py --lr 3e-4 --batch-size 64 --epochs 3\n"),
    ("", "loss = -log p(x_0 | x_t)   # ]]> & <tag> survive\n"),
]


def sentence(rng):
    parts = []
    for _ in range(rng.randint(2, 4)):
        zh = rng.choice(ZH)
        r = rng.random()
        if r < 0.15:
            zh = f"**{zh}**"
        elif r < 0.25:
            zh = f"*{zh}*"
        elif r < 0.35:
            zh = f"{zh} `{rng.choice(EN)}`"
        elif r < 0.60:
            zh = f"{zh} {rng.choice(EN)}"
        parts.append(zh)
    return "，".join(parts) + "。"


def paragraph(rng, n, slug_of):
    out = []
    for _ in range(rng.randint(3, 6)):
        s = sentence(rng)
        r = rng.random()
        if r < 0.12:
            s += f"详见[{rng.choice(EN)}](https://example.com/{rng.choice(EN).replace(' ', '-')}/{rng.randint(1, 999)})。"
        elif r < 0.20 and n > 0:
            k = rng.randrange(n)
            s += f"上一次讨论见[第 {k + 1} 期]({slug_of(k)}.md)。"
        elif r < 0.25:
            s += f"原文：https://arxiv.org/abs/23{rng.randint(1, 12):02d}.{rng.randint(10000, 99999)} 。"
        out.append(s)
    return "".join(out)


def entry(rng, k, n, slug_of):
    title = " ".join(rng.choice(EN_TITLE) for _ in range(rng.randint(3, 7)))
    authors = ", ".join(rng.sample(NAMES, rng.randint(2, 8)))
    arxiv = f"23{rng.randint(1, 12):02d}.{rng.randint(10000, 99999)}"
    blocks = [
        f"## {k}、{title}",
        f"*{authors}*",
        f"论文：<https://arxiv.org/abs/{arxiv}>，代码：[github.com/example/{arxiv}](https://github.com/example/{arxiv})",
        paragraph(rng, n, slug_of),
    ]
    r = rng.random()
    if r < 0.35:
        blocks.append("\n".join(f"- {rng.choice(ZH)}：{rng.choice(EN)}" for _ in range(rng.randint(3, 6))))
    elif r < 0.5:
        blocks.append("\n".join(f"{i + 1}. {rng.choice(ZH)}" for i in range(rng.randint(2, 5))))
    blocks.append(paragraph(rng, n, slug_of))
    r = rng.random()
    if r < 0.3:
        lang, code = rng.choice(CODE)
        blocks.append(f"```{lang}\n{code}```")
    elif r < 0.55:
        rows = [f"| {rng.choice(EN_TITLE)}-{rng.randint(1, 99)}B | {rng.randint(30, 95)}.{rng.randint(0, 9)} | {rng.choice(ZH)} |" for _ in range(rng.randint(3, 6))]
        blocks.append("| 模型 Model | 得分 Score | 备注 |\n| --- | ---: | --- |\n" + "\n".join(rows))
    elif r < 0.7:
        blocks.append(f"> {sentence(rng)}")
    return blocks


def issue(k, slug_of):
    """Issue k (0-based): (front matter fields, body)."""
    rng = random.Random(f"{SEED}-{k}")
    date = datetime.datetime(1995, 1, 1, 9, 0) + datetime.timedelta(days=k)
    title = f"第 {k + 1} 期：{rng.choice(ZH)} / {' '.join(rng.choice(EN_TITLE) for _ in range(3))}"
    tags = rng.sample(TAGS, rng.randint(1, 3))
    summary = sentence(rng).replace("*", "").replace("`", "") if k % 2 == 0 else None
    blocks = [paragraph(rng, k, slug_of), f"> {sentence(rng)}"]
    n = 1
    while sum(len(b.encode()) + 2 for b in blocks) < TARGET_BYTES:
        blocks += entry(rng, n, k, slug_of)
        n += 1
    return {"title": title, "date": date, "tags": tags, "summary": summary, "number": k + 1}, "\n\n".join(blocks) + "\n"


def toml_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def front_matter(fm, date_key_suffix="+08:00"):
    lines = ["+++", f"title = {toml_str(fm['title'])}", f"date = {fm['date'].isoformat()}{date_key_suffix}"]
    if fm["summary"]:
        lines.append(f"summary = {toml_str(fm['summary'])}")
    lines.append(f"number = {fm['number']}")
    lines.append("tags = [" + ", ".join(toml_str(t) for t in fm["tags"]) + "]")
    lines.append("+++")
    return "\n".join(lines) + "\n"


HUGO_CONFIG = """\
baseURL = "https://digest.example.org/"
languageCode = "zh-CN"
title = "论文月刊 Paper Digest"
hasCJKLanguage = true
# The same outputs as gazette: one page per issue, an archive of every issue, one feed of the
# newest 20 issues with full content. No tag pages, no section page, no sitemap.
rssLimit = 20
disableKinds = ["taxonomy", "term", "section", "sitemap", "robotsTXT", "404"]
[outputs]
home = ["HTML", "RSS"]
page = ["HTML"]
"""

HUGO_LAYOUTS = {
    "_default/baseof.html": """\
<!DOCTYPE html>
<html lang="{{ .Site.LanguageCode }}">
<head><meta charset="utf-8"><title>{{ .Title }} · {{ .Site.Title }}</title>
<link rel="alternate" type="application/rss+xml" href="{{ "index.xml" | absURL }}"></head>
<body>{{ block "main" . }}{{ end }}</body>
</html>
""",
    "_default/single.html": """\
{{ define "main" }}<article><h1>{{ .Title }}</h1>
<p><time datetime="{{ .Date.Format "2006-01-02T15:04:05-07:00" }}">{{ .Date.Format "2006-01-02" }}</time>{{ range .Params.tags }} <span class="tag">{{ . }}</span>{{ end }}</p>
{{ .Content }}</article>
<nav>{{ with .PrevInSection }}<a rel="prev" href="{{ .RelPermalink }}">{{ .Title }}</a>{{ end }}{{ with .NextInSection }}<a rel="next" href="{{ .RelPermalink }}">{{ .Title }}</a>{{ end }}</nav>{{ end }}
""",
    "_default/list.html": """\
{{ define "main" }}<ol reversed>{{ range .Site.RegularPages }}
<li><time>{{ .Date.Format "2006-01-02" }}</time> <a href="{{ .RelPermalink }}">{{ .Title }}</a><p>{{ .Summary | plainify }}</p></li>{{ end }}
</ol>{{ end }}
""",
    "_default/rss.xml": """\
{{- printf "<?xml version=\\"1.0\\" encoding=\\"utf-8\\"?>" | safeHTML }}
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">
<channel><title>{{ .Site.Title }}</title><link>{{ .Permalink }}</link><description>{{ .Site.Title }}</description>
{{- range first 20 .Site.RegularPages.ByDate.Reverse }}
<item><title>{{ .Title }}</title><link>{{ .Permalink }}</link><guid isPermaLink="false">{{ .Permalink }}</guid>
<pubDate>{{ .Date.Format "Mon, 02 Jan 2006 15:04:05 -0700" }}</pubDate>
<description>{{ .Summary | plainify | html }}</description>
<content:encoded>{{ .Content | html }}</content:encoded></item>
{{- end }}
</channel></rss>
""",
}


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: generate.py N OUT_DIR")
    n = int(sys.argv[1])
    out = pathlib.Path(sys.argv[2])
    g, h = out / "gazette", out / "hugo"
    for d in (g, h):
        if d.exists():
            shutil.rmtree(d)
    (g / "issues").mkdir(parents=True)
    shutil.copy(REPO / "gazette.toml", g / "gazette.toml")
    shutil.copytree(REPO / "templates", g / "templates")
    (h / "content" / "posts").mkdir(parents=True)
    (h / "hugo.toml").write_text(HUGO_CONFIG, encoding="utf-8")
    for name, text in HUGO_LAYOUTS.items():
        path = h / "layouts" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    def slug_of(k):
        return f"issue-{k + 1:05d}"

    total = 0
    for k in range(n):
        fm, body = issue(k, slug_of)
        text = front_matter(fm) + "\n" + body
        total += len(body.encode())
        (g / "issues" / f"{slug_of(k)}.md").write_text(text, encoding="utf-8")
        (h / "content" / "posts" / f"{slug_of(k)}.md").write_text(text, encoding="utf-8")
    print(f"{n} issues, {total / n / 1000:.1f} KB of Markdown each, {total / 1e6:.1f} MB in all", file=sys.stderr)


if __name__ == "__main__":
    main()
