/* Unit tests of the PTB tokenizer and the caption / retrieval metrics on
 * small hand cases. Expected floating-point values were computed with a
 * plain-Python transcription of pycocoevalcap's bleu_scorer.py, rouge.py and
 * cider_scorer.py (math.log for np.log) and are compared bit for bit. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "metrics.h"
#include "ptb.h"
#include "util.h"

static void tok_case(const char *in, const char *want, int mode) {
    char *got = ptb_tokenize(in, mode);
    char name[300];
    snprintf(name, sizeof name, "ptb %s: %.60s", mode == PTB_JAVA ? "raw" : "pycoco", in);
    CHECKF(!strcmp(got, want), name, "got '%s', want '%s'", got, want);
    free(got);
}

static void test_ptb(void) {
    tok_case("A dog barks, while cars pass by.", "a dog barks while cars pass by", PTB_PYCOCO);
    tok_case("A dog barks, while cars pass by.", "a dog barks , while cars pass by .", PTB_JAVA);
    tok_case("It's raining; we don't know, can't tell, won't stop.", "it 's raining we do n't know ca n't tell wo n't stop",
             PTB_PYCOCO);
    tok_case("People cannot hear it; gonna go.", "people can not hear it gon na go", PTB_PYCOCO);
    tok_case("The \"bird\" (muffled) [faintly] {briefly}...", "the `` bird '' -lrb- muffled -rrb- -lsb- faintly -rsb- "
             "-lcb- briefly -rcb- ...", PTB_JAVA);
    tok_case("The \"bird\" (muffled) [faintly] {briefly}...", "the bird -lrb- muffled -rrb- -lsb- faintly -rsb- -lcb- "
             "briefly -rcb-", PTB_PYCOCO);
    tok_case("a high-pitched 3.5 kHz tone at 1,000 Hz, 50% and $5", "a high-pitched 3.5 khz tone at 1,000 hz 50 % and $ 5",
             PTB_PYCOCO);
    tok_case("Mr. Smith at 5 p.m. vs. U.S. cars, no. word.", "mr. smith at 5 p.m. vs. u.s. cars , no . word .", PTB_JAVA);
    tok_case("Wind -- strongly --- and \xe2\x80\x94 dash \xe2\x80\xa6 \xe2\x80\x9c" "curly\xe2\x80\x9d it\xe2\x80\x99s",
             "wind -- strongly -- and -- dash ... `` curly '' it 's", PTB_JAVA);
    tok_case("\xc3\x89" "COLE \xc2\xbd cup, emoji \xf0\x9f\x98\x80 here", "\xc3\xa9" "cole 1/2 cup emoji here", PTB_PYCOCO);
    tok_case("A &amp; B &lt; C", "a & b < c", PTB_PYCOCO);
    tok_case("", "", PTB_PYCOCO);
    tok_case("  .  ", "", PTB_PYCOCO);
    tok_case("!! ?!", "!! ?!", PTB_PYCOCO);
    tok_case("a_b., x", "a_b. , x", PTB_JAVA); /* {THING}\./{INSENTP} */
    tok_case("\xc4\xb0stanbul", "i\xcc\x87stanbul", PTB_JAVA); /* Java's toLowerCase of U+0130 */

    /* one run over several lines: an abbreviation before a capital on the
     * next line is repeated as a period; "A." before "The" loses its period */
    const char *in[] = {"Cars, trucks, etc.", "Birds chirp.", "a cat named A.", "The end", "line\nbreak"};
    char *out[5];
    ptb_tokenize_lines(in, 5, out, PTB_JAVA);
    CHECKF(!strcmp(out[0], "cars , trucks , etc. ."), "ptb lines: etc. before a capital on the next line", "%s", out[0]);
    CHECKF(!strcmp(out[2], "a cat named a ."), "ptb lines: 'A.' before 'The' on the next line", "%s", out[2]);
    CHECKF(!strcmp(out[3], "the end"), "ptb lines: each caption on its own line", "%s", out[3]);
    CHECKF(!strcmp(out[4], "line break"), "ptb lines: a newline inside a caption is a space", "%s", out[4]);
    for (int i = 0; i < 5; i++) free(out[i]);
    CHECK(ptb_is_dropped("--") && ptb_is_dropped("...") && !ptb_is_dropped("-lrb-") && ptb_is_dropped("-LRB-") &&
              !ptb_is_dropped("!!"),
          "ptb drop set: exact, case-sensitive");
}

static int same(double a, double b) { return a == b || (isnan(a) && isnan(b)); }

static void test_caption_metrics(void) {
    const char *r1[] = {"the cat sat on the mat", "a cat is on the mat"};
    const char *r2[] = {"a dog is barking", "dogs bark loudly", "a dog barks"};
    cm_item items[2] = {{"a cat sat on the mat", r1, 2}, {"a dog barks", r2, 3}};
    cm_scores s;
    cm_compute(items, 2, &s);
    const double corpus_bleu[4] = {0x1.fffffffe17544p-1, 0x1.fffffffdf46c8p-1, 0x1.db4c775ea5445p-1, 0x1.b58ab997a6590p-1};
    const double item_bleu[2][4] = {{0x1.fffffffd22fe1p-1, 0x1.fffffffcfe579p-1, 0x1.d12ed0ac327a0p-1, 0x1.ae89f992c1dd7p-1},
                                    {0x1.fffffffa45fc5p-1, 0x1.fffffff98ebbdp-1, 0x1.fffffff7e3258p-1, 0x1.030dc4e692d2cp-5}};
    int ok = 1;
    for (int k = 0; k < 4; k++) ok &= same(s.bleu[k], corpus_bleu[k]);
    CHECKF(ok, "BLEU-1..4 corpus ('closest', 1e-9/1e-15 smoothing) bit-identical", "%a %a %a %a", s.bleu[0], s.bleu[1],
           s.bleu[2], s.bleu[3]);
    ok = 1;
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 4; k++) ok &= same(s.bleu_item[4 * i + k], item_bleu[i][k]);
    CHECK(ok, "BLEU-1..4 sentence level bit-identical");
    CHECK(s.testlen == 9 && s.reflen == 9 && s.guess[0] == 9 && s.correct[0] == 9 && s.correct[3] == 2,
          "BLEU counts: lengths, guesses, clipped matches");
    CHECKF(same(s.rouge_item[0], 0x1.aaaaaaaaaaaabp-1) && same(s.rouge_item[1], 1.0), "ROUGE-L per item", "%a %a",
           s.rouge_item[0], s.rouge_item[1]);
    CHECK(same(s.rouge_l, (s.rouge_item[0] + s.rouge_item[1]) / 2), "ROUGE-L corpus = mean");
    CHECKF(same(s.cider_item[0], 0x1.88c83c74443a0p+2) && same(s.cider_item[1], 0x1.9f8b271e108fdp+1) &&
               same(s.cider_d, 0x1.2c46e801a640fp+2),
           "CIDEr-D per item and corpus", "%a %a %a", s.cider_item[0], s.cider_item[1], s.cider_d);
    cm_free(&s);

    /* one item: ln 1 = 0, CIDEr-D is 0; an empty candidate scores 0 */
    cm_item one = {"", r1, 2};
    cm_compute(&one, 1, &s);
    CHECK(s.cider_d == 0 && s.rouge_l == 0 && s.bleu[0] == 0 && s.bleu[3] == 0, "empty candidate, one item: all 0");
    cm_free(&s);
    /* ROUGE-L splits on single spaces: "a  b" has an empty token */
    const char *rr[] = {"a c"};
    double f = cm_rouge_l("a b c", rr, 1), want = ((1 + pow(1.2, 2)) * (2 / 3.0) * 1.0) / (1.0 + pow(1.2, 2) * (2 / 3.0));
    CHECKF(f == want, "ROUGE-L: LCS 2 of 3 and 2", "%a %a", f, want);
    const char *re[] = {""};
    CHECK(cm_rouge_l("", re, 1) == 1.0, "ROUGE-L of two empty strings is 1 (both are [''], as in Python)");
}

static void test_np_mean(void) {
    double a[1045];
    for (int i = 0; i < 1045; i++) a[i] = 1.0 / (i + 1);
    /* numpy 1.24: np.add.reduce / np.mean of these arrays (pairwise sums) */
    CHECKF(np_pairwise_sum(a, 300) == 0x1.92172a3e6965ap+2, "numpy pairwise sum, n = 300", "%a", np_pairwise_sum(a, 300));
    CHECKF(np_pairwise_sum(a, 1045) == 0x1.e1e2c64ad66f8p+2, "numpy pairwise sum, n = 1045 (a naive sum differs)", "%a",
           np_pairwise_sum(a, 1045));
    CHECK(np_mean(a, 300) == 0x1.571e01ea2a26fp-6 && np_mean(a, 77) == 0x1.061e0ff92067ep-4, "numpy mean");
}

static void test_retrieval(void) {
    /* ties go to the earlier item */
    float row[5] = {0.5f, 0.9f, 0.5f, 0.1f, 0.9f};
    CHECK(rt_rank(row, 5, 1) == 1 && rt_rank(row, 5, 4) == 2 && rt_rank(row, 5, 0) == 3 && rt_rank(row, 5, 2) == 4 &&
              rt_rank(row, 5, 3) == 5,
          "rank: 1 + higher + equal before");
    /* 3 audios (a2 a copy of a0), 4 captions */
    float audio[3 * 2] = {1, 0, 0, 1, 1, 0};
    float text[4 * 2] = {1, 0, 0, 1, 1, 0, 0.6f, 0.8f};
    int ta[4] = {0, 1, 2, 1};
    rt_scores t2a, a2t;
    long tr[4], ar[3];
    rt_evaluate(text, 4, audio, 3, 2, ta, &t2a, &a2t, tr, ar);
    /* t2a: c0 -> a0 rank 1 (ties a2, later); c1 -> a1 1; c2 -> a2 2; c3 -> a1 1 */
    CHECKF(tr[0] == 1 && tr[1] == 1 && tr[2] == 2 && tr[3] == 1, "t2a ranks", "%ld %ld %ld %ld", tr[0], tr[1], tr[2], tr[3]);
    CHECK(t2a.queries == 4 && t2a.r1 == 0.75 && t2a.map10 == (1 + 1 + 0.5 + 1) / 4 && t2a.median_rank == 1 &&
              t2a.mean_rank == 1.25,
          "t2a R@1, mAP@10, median and mean rank");
    /* a2t: a0 gallery c0 1, c2 1 (tie, c0 first): c0 rank 1; a1: c1 1, c3 .8 -> ranks 1, 2, AP (1 + 1) / 2;
     * a2: c0 and c2 tie, c2 rank 2, AP 1/2 */
    CHECKF(ar[0] == 1 && ar[1] == 1 && ar[2] == 2, "a2t best ranks", "%ld %ld %ld", ar[0], ar[1], ar[2]);
    CHECK(a2t.queries == 3 && fabs(a2t.map10 - (1 + 1 + 0.5) / 3) < 1e-15 && fabs(a2t.r1 - 2 / 3.0) < 1e-15,
          "a2t R@1 and mAP@10 over each audio's captions");
    /* a caption left out (-1) takes no part */
    int ta2[4] = {0, 1, 2, -1};
    rt_evaluate(text, 4, audio, 3, 2, ta2, &t2a, &a2t, tr, ar);
    CHECK(t2a.queries == 3 && tr[3] == 0 && a2t.queries == 3, "a left-out caption is neither query nor gallery item");
}

int main(void) {
    test_ptb();
    test_caption_metrics();
    test_np_mean();
    test_retrieval();
    return check_exit();
}
