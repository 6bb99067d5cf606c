"""Reference: Hugging Face's slow BertTokenizer (transformers 4.27.4), re-typed.

What `BertTokenizer.from_pretrained("bert-base-uncased")(text)["input_ids"]`
and `.decode(ids, skip_special_tokens=True)` do, with the same structure and
order of steps as the 4.27 sources, using Python's own unicodedata (it could
not be installed here):
  - PreTrainedTokenizer.tokenize (tokenization_utils.py): lowercase every
    character outside the special tokens with re.sub("(specials)|(.+?)", ...),
    one character at a time; split the text around the special tokens
    (tokens_trie.split; the five BERT tokens never overlap, so a leftmost scan
    is the same); strip the whitespace next to each special token; _tokenize
    each remaining piece.
  - BertTokenizer._tokenize / BasicTokenizer.tokenize / WordpieceTokenizer
    (models/bert/tokenization_bert.py): _clean_text, _tokenize_chinese_chars,
    whitespace_tokenize, lower + _run_strip_accents, _run_split_on_punc,
    WordPiece with max_input_chars_per_word=100. (No NFC step: that came in
    4.31, PR #22280.)
  - decode: convert_ids_to_tokens(skip_special_tokens) -> convert_tokens_to_string
    -> clean_up_tokenization.
flavor="google" gives google-research/bert tokenization.py instead (FullTokenizer,
do_lower_case=True): no special-token handling, token.lower() (so a final
capital sigma becomes ς), _is_control only Cc/Cf, 200 characters per word.
"""
import re
import unicodedata

SPECIALS = ["[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]"]  # HF all_special_tokens order


def load_vocab(path):
    vocab = {}
    with open(path, "r", encoding="utf-8") as reader:
        tokens = reader.readlines()
    for index, token in enumerate(tokens):
        token = token.rstrip("\n")
        vocab[token] = index
    return vocab


def whitespace_tokenize(text):
    text = text.strip()
    if not text:
        return []
    return text.split()


def _is_whitespace(char):
    if char == " " or char == "\t" or char == "\n" or char == "\r":
        return True
    return unicodedata.category(char) == "Zs"


def _is_control_hf(char):
    if char == "\t" or char == "\n" or char == "\r":
        return False
    return unicodedata.category(char).startswith("C")


def _is_control_google(char):
    if char == "\t" or char == "\n" or char == "\r":
        return False
    return unicodedata.category(char) in ("Cc", "Cf")


def _is_punctuation(char):
    cp = ord(char)
    if (33 <= cp <= 47) or (58 <= cp <= 64) or (91 <= cp <= 96) or (123 <= cp <= 126):
        return True
    return unicodedata.category(char).startswith("P")


def _is_chinese_char(cp):
    return (
        (0x4E00 <= cp <= 0x9FFF)
        or (0x3400 <= cp <= 0x4DBF)
        or (0x20000 <= cp <= 0x2A6DF)
        or (0x2A700 <= cp <= 0x2B73F)
        or (0x2B740 <= cp <= 0x2B81F)
        or (0x2B820 <= cp <= 0x2CEAF)
        or (0xF900 <= cp <= 0xFAFF)
        or (0x2F800 <= cp <= 0x2FA1F)
    )


class BasicTokenizer:
    def __init__(self, is_control, never_split=()):
        self.never_split = set(never_split)
        self.is_control = is_control

    def tokenize(self, text, never_split=None):
        never_split = self.never_split.union(set(never_split)) if never_split else self.never_split
        text = self._clean_text(text)
        text = self._tokenize_chinese_chars(text)
        orig_tokens = whitespace_tokenize(text)
        split_tokens = []
        for token in orig_tokens:
            if token not in never_split:
                token = token.lower()
                token = self._run_strip_accents(token)
            split_tokens.extend(self._run_split_on_punc(token, never_split))
        return whitespace_tokenize(" ".join(split_tokens))

    @staticmethod
    def _run_strip_accents(text):
        text = unicodedata.normalize("NFD", text)
        return "".join(c for c in text if unicodedata.category(c) != "Mn")

    @staticmethod
    def _run_split_on_punc(text, never_split=None):
        if never_split is not None and text in never_split:
            return [text]
        output = []
        start_new_word = True
        for char in text:
            if _is_punctuation(char):
                output.append([char])
                start_new_word = True
            else:
                if start_new_word:
                    output.append([])
                start_new_word = False
                output[-1].append(char)
        return ["".join(x) for x in output]

    @staticmethod
    def _tokenize_chinese_chars(text):
        out = []
        for char in text:
            if _is_chinese_char(ord(char)):
                out.extend((" ", char, " "))
            else:
                out.append(char)
        return "".join(out)

    def _clean_text(self, text):
        out = []
        for char in text:
            cp = ord(char)
            if cp == 0 or cp == 0xFFFD or self.is_control(char):
                continue
            out.append(" " if _is_whitespace(char) else char)
        return "".join(out)


class WordpieceTokenizer:
    def __init__(self, vocab, unk_token="[UNK]", max_input_chars_per_word=100):
        self.vocab = vocab
        self.unk_token = unk_token
        self.max_input_chars_per_word = max_input_chars_per_word

    def tokenize(self, text):
        output_tokens = []
        for token in whitespace_tokenize(text):
            chars = list(token)
            if len(chars) > self.max_input_chars_per_word:
                output_tokens.append(self.unk_token)
                continue
            is_bad = False
            start = 0
            sub_tokens = []
            while start < len(chars):
                end = len(chars)
                cur_substr = None
                while start < end:
                    substr = "".join(chars[start:end])
                    if start > 0:
                        substr = "##" + substr
                    if substr in self.vocab:
                        cur_substr = substr
                        break
                    end -= 1
                if cur_substr is None:
                    is_bad = True
                    break
                sub_tokens.append(cur_substr)
                start = end
            if is_bad:
                output_tokens.append(self.unk_token)
            else:
                output_tokens.extend(sub_tokens)
        return output_tokens


class BertTokenizerRef:
    def __init__(self, vocab_file, flavor="hf"):
        self.vocab = load_vocab(vocab_file)
        self.ids_to_tokens = {i: t for t, i in self.vocab.items()}
        self.flavor = flavor
        if flavor == "hf":
            self.basic = BasicTokenizer(_is_control_hf)
            self.wordpiece = WordpieceTokenizer(self.vocab, max_input_chars_per_word=100)
        else:
            self.basic = BasicTokenizer(_is_control_google)
            self.wordpiece = WordpieceTokenizer(self.vocab, max_input_chars_per_word=200)
        self.all_special_tokens = [t for t in SPECIALS if t in self.vocab]
        self.all_special_ids = {self.vocab[t] for t in self.all_special_tokens}

    # PreTrainedTokenizer.tokenize
    def tokenize(self, text):
        if self.flavor != "hf":
            return [s for t in self.basic.tokenize(text) for s in self.wordpiece.tokenize(t)]
        escaped = [re.escape(s) for s in self.all_special_tokens]
        pattern = r"(" + r"|".join(escaped) + r")|" + r"(.+?)"
        text = re.sub(pattern, lambda m: m.groups()[0] or m.groups()[1].lower(), text)
        tokens = self._split_specials(text)
        no_split = set(self.all_special_tokens)
        for i, token in enumerate(tokens):
            if token in no_split:
                left = tokens[i - 1] if i > 0 else None
                right = tokens[i + 1] if i < len(tokens) - 1 else None
                if right:
                    tokens[i + 1] = right.lstrip()
                if left:
                    tokens[i - 1] = left.rstrip()
        out = []
        for token in tokens:
            if not token:
                continue
            if token in no_split:
                out.append(token)
            else:
                out.extend(self._tokenize(token))
        return out

    def _split_specials(self, text):
        # Trie.split for tokens that never overlap: cut before and after each
        # leftmost occurrence; no empty pieces
        pieces, start, i = [], 0, 0
        while i < len(text):
            hit = next((s for s in self.all_special_tokens if text.startswith(s, i)), None)
            if hit is None:
                i += 1
                continue
            if i > start:
                pieces.append(text[start:i])
            pieces.append(hit)
            i += len(hit)
            start = i
        if start < len(text):
            pieces.append(text[start:])
        return pieces

    # BertTokenizer._tokenize
    def _tokenize(self, text):
        split_tokens = []
        for token in self.basic.tokenize(text, never_split=self.all_special_tokens):
            if token in self.basic.never_split:
                split_tokens.append(token)
            else:
                split_tokens += self.wordpiece.tokenize(token)
        return split_tokens

    def convert_tokens_to_ids(self, tokens):
        unk = self.vocab["[UNK]"]
        return [self.vocab.get(t, unk) for t in tokens]

    def ids(self, text):
        return self.convert_tokens_to_ids(self.tokenize(text))

    def encode(self, text, max_length):
        ids = self.ids(text)[: max_length - 2]
        return [self.vocab["[CLS]"]] + ids + [self.vocab["[SEP]"]]

    def decode(self, ids, skip_special_tokens=True, clean_up_tokenization_spaces=True):
        tokens = []
        for index in ids:
            if skip_special_tokens and index in self.all_special_ids:
                continue
            tokens.append(self.ids_to_tokens.get(index, "[UNK]"))
        text = " ".join(tokens).replace(" ##", "").strip()
        if clean_up_tokenization_spaces:
            text = (
                text.replace(" .", ".")
                .replace(" ?", "?")
                .replace(" !", "!")
                .replace(" ,", ",")
                .replace(" ' ", "'")
                .replace(" n't", "n't")
                .replace(" 'm", "'m")
                .replace(" 's", "'s")
                .replace(" 've", "'ve")
                .replace(" 're", "'re")
            )
        return text
