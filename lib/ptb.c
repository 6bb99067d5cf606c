/* ptb.c - pycocoevalcap's PTB tokenization (see ptb.h).
 *
 * The lexer is a small regular-expression engine (Thompson NFAs over UTF-16
 * code units, as Java's char) running the rules of CoreNLP v3.4.1
 * src/edu/stanford/nlp/process/PTBLexer.flex with JFlex's semantics:
 *   - at each position every rule is tried; the longest match wins, the
 *     trailing context of r1/r2 counting in its length; on a tie the rule
 *     written first wins;
 *   - %caseless: literal characters match either case, character classes
 *     do not expand ([A]bout needs a capital A);
 *   - [:letter:] [:digit:] [:uppercase:] are Java's Character.isLetter,
 *     isDigit, isUpperCase (Unicode categories L*, Nd, Lu, here from
 *     utf8proc); a character outside the BMP is two surrogate units that
 *     match no class, as in Java;
 *   - only the rules of the lexical state YyTraditionalTreebank3 (the default,
 *     strictTreebank3=false) take part.
 * Actions reproduce the default options (ptb3Escaping): -LRB- for "(",
 * `` and '' for quotes, "--" for dashes, "..." for ellipses, "&" for "&amp;",
 * 1/2 for U+00BD, a no-break space for a space inside a token; tokenizeNLs
 * (from -preserveLines) makes each newline a line break of the output;
 * untokenizable characters are deleted. Then each token is lowercased like
 * Java's String.toLowerCase(Locale.ENGLISH). */
#include "ptb.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "util.h"

/* ------------------------------------------------------------ classes */

enum { P_LETTER = 1, P_DIGIT = 2, P_UPPER = 4 };

typedef struct {
    uint16_t *r; /* ranges lo, hi, lo, hi, ... */
    int nr;      /* number of ranges */
    unsigned pred;
    int neg;
    uint64_t ascii[2]; /* membership of units < 128, filled once built */
} cclass;

static cclass *classes;
static int nclasses, cap_classes;

static int java_category(uint32_t u, int which) {
    if (u >= 0xD800 && u <= 0xDFFF) return 0; /* a lone surrogate unit: no class */
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)u);
    switch (which) {
    case P_LETTER:
        return c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT ||
               c == UTF8PROC_CATEGORY_LM || c == UTF8PROC_CATEGORY_LO;
    case P_DIGIT: return c == UTF8PROC_CATEGORY_ND;
    case P_UPPER: return c == UTF8PROC_CATEGORY_LU;
    }
    return 0;
}

static int class_has_slow(const cclass *c, uint32_t u) {
    int in = 0;
    for (int i = 0; i < c->nr && !in; i++) in = u >= c->r[2 * i] && u <= c->r[2 * i + 1];
    if (!in && c->pred) {
        if ((c->pred & P_LETTER) && java_category(u, P_LETTER)) in = 1;
        else if ((c->pred & P_DIGIT) && java_category(u, P_DIGIT)) in = 1;
        else if ((c->pred & P_UPPER) && java_category(u, P_UPPER)) in = 1;
    }
    return c->neg ? !in : in;
}

static inline int class_has(const cclass *c, uint32_t u) {
    if (u < 128) return (int)((c->ascii[u >> 6] >> (u & 63)) & 1);
    return class_has_slow(c, u);
}

static int class_new(void) {
    if (nclasses == cap_classes) {
        cap_classes = cap_classes ? 2 * cap_classes : 256;
        classes = xrealloc(classes, (size_t)cap_classes * sizeof(cclass));
    }
    memset(&classes[nclasses], 0, sizeof(cclass));
    return nclasses++;
}

static void class_add(int ci, uint32_t lo, uint32_t hi) {
    cclass *c = &classes[ci];
    c->r = xrealloc(c->r, (size_t)(c->nr + 1) * 2 * sizeof(uint16_t));
    c->r[2 * c->nr] = (uint16_t)lo;
    c->r[2 * c->nr + 1] = (uint16_t)hi;
    c->nr++;
}

/* ------------------------------------------------------------ parser */

typedef enum { N_CLASS, N_CAT, N_ALT, N_STAR, N_PLUS, N_OPT, N_REP, N_EMPTY } ntype;
typedef struct node {
    ntype t;
    int cls;
    struct node *a, *b;
    int min, max;
} node;

static node **all_nodes;
static int nnodes, cap_nodes;

static node *mk(ntype t, node *a, node *b) {
    node *n = xcalloc(1, sizeof *n);
    n->t = t;
    n->a = a;
    n->b = b;
    if (nnodes == cap_nodes) {
        cap_nodes = cap_nodes ? 2 * cap_nodes : 1024;
        all_nodes = xrealloc(all_nodes, (size_t)cap_nodes * sizeof(node *));
    }
    all_nodes[nnodes++] = n;
    return n;
}

/* Macros of PTBLexer.flex (v3.4.1), in JFlex syntax. Only what the rules
 * of the traditional state use; C string escaping doubles each backslash. */
static const struct {
    const char *name, *re;
} macros[] = {
    {"SGML", "\\<([!\\?][A-Za-z\\-][^>\\r\\n]*|[A-Za-z][A-Za-z0-9_:\\.\\-]*([ ]+([A-Za-z][A-Za-z0-9_:\\.\\-]*|"
             "[A-Za-z][A-Za-z0-9_:\\.\\-]*[ ]*=[ ]*('[^']*'|\\\"[^\\\"]*\\\")))*[ ]*\\/?|"
             "\\/[A-Za-z][A-Za-z0-9_:\\.\\-]*)[ ]*\\>"},
    {"SPMDASH", "&(MD|mdash|ndash);|[\\u0096\\u0097\\u2013\\u2014\\u2015]"},
    {"SPAMP", "&amp;"},
    {"SPPUNC", "&(HT|TL|UR|LR|QC|QL|QR|odq|cdq|#[0-9]+);"},
    {"SPLET", "&[aeiouAEIOU](acute|grave|uml);"},
    {"SPACE", "[ \\t\\u00A0\\u2000-\\u200A\\u3000]"},
    {"SPACES", "{SPACE}+"},
    {"NEWLINE", "\\r|\\r?\\n|\\u2028|\\u2029|\\u000B|\\u000C|\\u0085"},
    {"SPACENL", "({SPACE}|{NEWLINE})"},
    {"SPACENLS", "{SPACENL}+"},
    {"SENTEND", "{SPACENL}({SPACENL}|[:uppercase:]|{SGML})"},
    {"DIGIT", "[:digit:]|[\\u07C0-\\u07C9]"},
    {"DATE", "{DIGIT}{1,2}[\\-\\/]{DIGIT}{1,2}[\\-\\/]{DIGIT}{2,4}"},
    {"NUM", "{DIGIT}+|{DIGIT}*([.:,\\u00AD\\u066B\\u066C]{DIGIT}+)+"},
    {"NUMBER", "[\\-+]?{NUM}"},
    {"SUBSUPNUM", "[\\u207A\\u207B\\u208A\\u208B]?([\\u2070\\u00B9\\u00B2\\u00B3\\u2074-\\u2079]+|[\\u2080-\\u2089]+)"},
    {"FRAC", "({DIGIT}{1,4}[- \\u00A0])?{DIGIT}{1,4}(\\\\?\\/|\\u2044){DIGIT}{1,4}"},
    {"FRAC2", "[\\u00BC\\u00BD\\u00BE\\u2153-\\u215E]"},
    {"DOLSIGN", "([A-Z]*\\$|#)"},
    {"DOLSIGN2", "[\\u00A2\\u00A3\\u00A4\\u00A5\\u0080\\u20A0\\u20AC\\u060B\\u0E3F\\u20A4\\uFFE0\\uFFE1\\uFFE5\\uFFE6]"},
    {"LETTER",
     "([:letter:]|{SPLET}|[\\u00AD\\u0237-\\u024F\\u02C2-\\u02C5\\u02D2-\\u02DF\\u02E5-\\u02FF\\u0300-\\u036F"
     "\\u0370-\\u037D\\u0384\\u0385\\u03CF\\u03F6\\u03FC-\\u03FF\\u0483-\\u0487\\u04CF\\u04F6-\\u04FF\\u0510-\\u0525"
     "\\u055A-\\u055F\\u0591-\\u05BD\\u05BF\\u05C1\\u05C2\\u05C4\\u05C5\\u05C7\\u0615-\\u061A\\u063B-\\u063F"
     "\\u064B-\\u065E\\u0670\\u06D6-\\u06EF\\u06FA-\\u06FF\\u070F\\u0711\\u0730-\\u074F\\u0750-\\u077F"
     "\\u07A6-\\u07B1\\u07CA-\\u07F5\\u07FA\\u0900-\\u0903\\u093C\\u093E-\\u094E\\u0951-\\u0955\\u0962-\\u0963"
     "\\u0981-\\u0983\\u09BC-\\u09C4\\u09C7\\u09C8\\u09CB-\\u09CD\\u09D7\\u09E2\\u09E3\\u0A01-\\u0A03\\u0A3C"
     "\\u0A3E-\\u0A4F\\u0A81-\\u0A83\\u0ABC-\\u0ACF\\u0B82\\u0BBE-\\u0BC2\\u0BC6-\\u0BC8\\u0BCA-\\u0BCD"
     "\\u0C01-\\u0C03\\u0C3E-\\u0C56\\u0D3E-\\u0D44\\u0D46-\\u0D48\\u0E30-\\u0E3A\\u0E47-\\u0E4E\\u0EB1-\\u0EBC"
     "\\u0EC8-\\u0ECD])"},
    {"WORD", "{LETTER}({LETTER}|{DIGIT})*([.!?]{LETTER}({LETTER}|{DIGIT})*)*"},
    {"FILENAME_EXT", "bat|bmp|c|class|cgi|cpp|dll|doc|docx|exe|gif|gz|h|htm|html|jar|java|jpeg|jpg|mov|mp3|pdf|"
                     "php|pl|png|ppt|ps|py|sql|tar|txt|wav|x|xml|zip"},
    {"FILENAME", "({LETTER}|{DIGIT})+([.]({LETTER}|{DIGIT})+)*([.]{FILENAME_EXT})"},
    {"THING", "([dDoOlL]{APOSETCETERA}([:letter:]|[:digit:]))?([:letter:]|[:digit:])+"
              "({HYPHEN}([dDoOlL]{APOSETCETERA}([:letter:]|[:digit:]))?([:letter:]|[:digit:])+)*"},
    {"THINGA", "[A-Z]+(([+&]|{SPAMP})[A-Z]+)+"},
    {"THING3", "[A-Za-z0-9]+(-[A-Za-z]+){0,2}(\\\\?\\/[A-Za-z0-9]+(-[A-Za-z]+){0,2}){1,2}"},
    {"APOS", "['\\u0092\\u2019]|&apos;"},
    {"APOSETCETERA", "{APOS}|[`\\u0091\\u2018\\u201B]"},
    {"HTHING", "[A-Za-z0-9][A-Za-z0-9.,\\u00AD]*(-([A-Za-z0-9\\u00AD]+|{ACRO2}\\.))+"},
    {"REDAUX", "{APOS}([msdMSD]|re|ve|ll)"},
    {"SWORD", "[A-Za-z\\u00AD]*[A-MO-Za-mo-z](\\u00AD)*"},
    {"SREDAUX", "n{APOSETCETERA}t"},
    {"APOWORD", "{APOS}n{APOS}?|[lLdDjJ]{APOS}|Dunkin{APOS}|somethin{APOS}|ol{APOS}|{APOS}em|"
                "[A-HJ-XZn]{APOSETCETERA}[:letter:]{2}[:letter:]*|{APOS}[2-9]0s|{APOS}till?|"
                "[:letter:][:letter:]*[aeiouyAEIOUY]{APOSETCETERA}[aeiouA-Z][:letter:]*|{APOS}cause|cont'd\\.?|"
                "'twas|nor'easter|c'mon|e'er|s'mores|ev'ry|li'l|nat'l|O{APOSETCETERA}o"},
    {"APOWORD2", "y{APOS}"},
    {"FULLURL", "https?:\\/\\/[^ \\t\\n\\f\\r\\\"<>|(){}]+[^ \\t\\n\\f\\r\\\"<>|.!?(){},-]"},
    /* [^...,-_$] is the range ','..'_' (digits and capitals included): JFlex
     * reads it so, and so does the generated lexer */
    {"LIKELYURL", "((www\\.([^ \\t\\n\\f\\r\\\"<>|.!?(){},]+\\.)+[a-zA-Z]{2,4})|"
                  "(([^ \\t\\n\\f\\r\\\"`'<>|.!?(){},-_$]+\\.)+(com|net|org|edu)))"
                  "(\\/[^ \\t\\n\\f\\r\\\"<>|()]+[^ \\t\\n\\f\\r\\\"<>|.!?(){},-])?"},
    {"EMAIL", "(&lt;|<)?[a-zA-Z0-9][^ \\t\\n\\f\\r\\\"<>|()\\u00A0{}]*@([^ \\t\\n\\f\\r\\\"<>|(){}.\\u00A0]+\\.)*"
              "([^ \\t\\n\\f\\r\\\"<>|(){}.\\u00A0]+)(&gt;|>)?"},
    {"TWITTER_NAME", "@[a-zA-Z_][a-zA-Z_0-9]*"},
    {"TWITTER_CATEGORY", "#{LETTER}+"},
    {"TWITTER", "{TWITTER_NAME}|{TWITTER_CATEGORY}"},
    {"ABMONTH", "Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec"},
    {"ABDAYS", "Mon|Tue|Tues|Wed|Thu|Thurs|Fri"},
    {"ABSTATE", "Ala|Ariz|[A]z|[A]rk|Calif|Colo|Conn|Ct|Dak|[D]el|Fla|Ga|[I]ll|Ind|Kans?|Ky|[L]a|[M]ass|Md|Mich|"
                "Minn|[M]iss|Mo|Mont|Neb|Nev|Okla|[O]re|[P]a|Penn|Tenn|[T]ex|Va|Vt|[W]ash|Wisc?|Wyo"},
    {"ABCOMP", "Inc|Cos?|Corp|Pp?t[ye]s?|Ltd|Plc|Rt|Bancorp|Bhd|Assn|Univ|Intl|Sys"},
    {"ABNUM", "tel|est|ext|sq"},
    {"ABPTIT", "Jr|Sr|Bros|(Ed|Ph)\\.D|Blvd|Rd|Esq"},
    {"ABBREV1", "({ABMONTH}|{ABDAYS}|{ABSTATE}|{ABCOMP}|{ABNUM}|{ABPTIT}|etc|al|seq|Bldg)\\."},
    {"ACRO", "[A-Za-z](\\.[A-Za-z])*|(Canada|Sino|Korean|EU|Japan|non)-U\\.S|U\\.S\\.-(U\\.K|U\\.S\\.S\\.R)"},
    {"ACRO2", "[A-Za-z](\\.[A-Za-z])+|(Canada|Sino|Korean|EU|Japan|non)-U\\.S|U\\.S\\.-(U\\.K|U\\.S\\.S\\.R)"},
    {"ABTITLE", "Mr|Mrs|Ms|[M]iss|Drs?|Profs?|Sens?|Reps?|Attys?|Lt|Col|Gen|Messrs|Govs?|Adm|Rev|Maj|Sgt|Cpl|Pvt|"
                "Capt|Ste?|Ave|Pres|Lieut|Hon|Brig|Co?mdr|Pfc|Spc|Supts?|Det|Mt|Ft|Adj|Adv|Asst|Assoc|Ens|Insp|"
                "Mlle|Mme|Msgr|Sfc"},
    {"ABCOMP2", "Invt|Elec|Natl|M[ft]g|Dept"},
    {"ABBREV4", "{ABTITLE}|vs|Alex|Wm|Jos|Cie|a\\.k\\.a|cf|TREAS|Ph|{ACRO}|{ABCOMP2}"},
    {"ABBREV2", "{ABBREV4}\\."},
    {"ACRONYM", "({ACRO})\\."},
    {"ABBREV3", "(ca|figs?|prop|nos?|art|bldg|prop|pp|op)\\."},
    {"PHONE", "(\\([0-9]{2,3}\\)[ \\u00A0]?|(\\+\\+?)?([0-9]{2,4}[\\- \\u00A0])?[0-9]{2,4}[\\- \\u00A0])"
              "[0-9]{3,4}[\\- \\u00A0]?[0-9]{3,5}|((\\+\\+?)?[0-9]{2,4}\\.)?[0-9]{2,4}\\.[0-9]{3,4}\\.[0-9]{3,5}"},
    {"FAKEDUCKFEET", "<<|>>"},
    {"LESSTHAN", "<|&lt;"},
    {"GREATERTHAN", ">|&gt;"},
    {"HYPHEN", "[-_\\u058A\\u2010\\u2011]"},
    {"HYPHENS", "\\-+"},
    {"LDOTS", "\\.{3,5}|(\\.[ \\u00A0]){2,4}\\.|[\\u0085\\u2026]"},
    {"ATS", "@+"},
    {"UNDS", "_+"},
    {"ASTS", "\\*+|(\\\\\\*){1,3}"},
    {"HASHES", "#+"},
    {"FNMARKS", "{ATS}|{HASHES}|{UNDS}"},
    {"INSENTP", "[,;:\\u3001]"},
    {"QUOTES", "{APOS}|''|[`\\u2018\\u2019\\u201A\\u201B\\u201C\\u201D\\u0091\\u0092\\u0093\\u0094\\u201E\\u201F"
               "\\u2039\\u203A\\u00AB\\u00BB]{1,2}"},
    {"DBLQUOT", "\\\"|&quot;"},
    {"TBSPEC", "-(RRB|LRB|RCB|LCB|RSB|LSB)-|C\\.D\\.s|pro-|anti-|S(&|&amp;)P-500|S(&|&amp;)Ls|Cap{APOS}n|c{APOS}est"},
    {"TBSPEC2", "{APOS}[0-9][0-9]"},
    {"SMILEY", "[<>]?[:;=][\\-o\\*']?[\\(\\)DPdpO\\\\{@\\|\\[\\]]"},
    /* the first alternative has an unbalanced "\[...]" in the original: the
     * ']' is a literal there too */
    {"ASIANSMILEY", "[\\^x=~<>]\\.\\[\\^x=~<>]|[\\-\\^x=~<>']_[\\-\\^x=~<>']|\\([\\-\\^x=~<>'][_.]?[\\-\\^x=~<>']\\)|"
                    "\\([\\^x=~<>']-[\\^x=~<>'`]\\)"},
    {"MISCSYMBOL",
     "[+%&~\\^|\\\\\\u00A6\\u00A7\\u00A8\\u00A9\\u00AC\\u00AE\\u00AF\\u00B0-\\u00B3\\u00B4-\\u00BA\\u00D7\\u00F7"
     "\\u0387\\u05BE\\u05C0\\u05C3\\u05C6\\u05F3\\u05F4\\u0600-\\u0603\\u0606-\\u060A\\u060C\\u0614\\u061B\\u061E"
     "\\u066A\\u066D\\u0703-\\u070D\\u07F6\\u07F7\\u07F8\\u0964\\u0965\\u0E4F\\u1FBD\\u2016\\u2017\\u2020-\\u2023"
     "\\u2030-\\u2038\\u203B\\u203E-\\u2042\\u2044\\u207A-\\u207F\\u208A-\\u208E\\u2100-\\u214F\\u2190-\\u21FF"
     "\\u2200-\\u2BFF\\u3012\\u30FB\\uFF01-\\uFF0F\\uFF1A-\\uFF20\\uFF3B-\\uFF40\\uFF5B-\\uFF65\\uFF65]"},
};
#define NMACROS ((int)(sizeof macros / sizeof macros[0]))
static node *macro_ast[NMACROS];

typedef struct {
    const char *p, *src;
} parser;

static void parse_fail(parser *ps, const char *why) {
    die("ptb: bad lexer rule at offset %d (%s): %s", (int)(ps->p - ps->src), why, ps->src);
}

static int hexval(parser *ps, int ndig) {
    int v = 0;
    for (int i = 0; i < ndig; i++) {
        char c = *ps->p++;
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) parse_fail(ps, "bad hex escape");
        v = v * 16 + d;
    }
    return v;
}

/* after a backslash */
static uint32_t parse_escape(parser *ps) {
    char c = *ps->p++;
    switch (c) {
    case 'u': return (uint32_t)hexval(ps, 4);
    case 'x': return (uint32_t)hexval(ps, 2);
    case 't': return '\t';
    case 'n': return '\n';
    case 'r': return '\r';
    case 'f': return '\f';
    case 'b': return '\b';
    case '0': return 0;
    case 0: parse_fail(ps, "trailing backslash"); return 0;
    default: return (uint32_t)(unsigned char)c;
    }
}

static node *class_node(int ci) {
    node *n = mk(N_CLASS, NULL, NULL);
    n->cls = ci;
    return n;
}

/* a literal outside a class: %caseless makes it match its case variants */
static node *literal(uint32_t c) {
    int ci = class_new();
    class_add(ci, c, c);
    uint32_t v[3] = {(uint32_t)utf8proc_toupper((utf8proc_int32_t)c), (uint32_t)utf8proc_tolower((utf8proc_int32_t)c),
                     (uint32_t)utf8proc_totitle((utf8proc_int32_t)c)};
    for (int i = 0; i < 3; i++)
        if (v[i] != c && v[i] < 0x10000) class_add(ci, v[i], v[i]);
    return class_node(ci);
}

static node *parse_alt(parser *ps);

static node *parse_class(parser *ps) {
    /* at '[' */
    ps->p++;
    int ci = class_new();
    static const struct {
        const char *s;
        unsigned pred;
    } named[] = {{":letter:]", P_LETTER}, {":digit:]", P_DIGIT}, {":uppercase:]", P_UPPER}};
    for (int i = 0; i < 3; i++)
        if (!strncmp(ps->p, named[i].s, strlen(named[i].s))) { /* [:letter:] etc. ("[:;=]" is a class) */
            classes[ci].pred = named[i].pred;
            ps->p += strlen(named[i].s);
            return class_node(ci);
        }
    if (*ps->p == '^') {
        classes[ci].neg = 1;
        ps->p++;
    }
    while (*ps->p != ']') {
        if (!*ps->p) parse_fail(ps, "unterminated class");
        uint32_t lo = *ps->p == '\\' ? (ps->p++, parse_escape(ps)) : (uint32_t)(unsigned char)*ps->p++;
        uint32_t hi = lo;
        if (ps->p[0] == '-' && ps->p[1] != ']') {
            ps->p++;
            hi = *ps->p == '\\' ? (ps->p++, parse_escape(ps)) : (uint32_t)(unsigned char)*ps->p++;
            if (hi < lo) parse_fail(ps, "bad range");
        }
        class_add(ci, lo, hi);
    }
    ps->p++;
    return class_node(ci);
}

static node *macro_node(const char *name, size_t len);

static node *parse_atom(parser *ps) {
    char c = *ps->p;
    if (c == '(') {
        ps->p++;
        node *n = parse_alt(ps);
        if (*ps->p != ')') parse_fail(ps, "missing )");
        ps->p++;
        return n;
    }
    if (c == '[') return parse_class(ps);
    if (c == '.') {
        ps->p++;
        int ci = class_new();
        classes[ci].neg = 1;
        class_add(ci, '\n', '\n');
        return class_node(ci);
    }
    if (c == '{') {
        const char *e = strchr(ps->p, '}');
        if (!e) parse_fail(ps, "unterminated {");
        node *n = macro_node(ps->p + 1, (size_t)(e - ps->p - 1));
        ps->p = e + 1;
        return n;
    }
    if (c == '"') parse_fail(ps, "string literals are not supported");
    if (c == '\\') {
        ps->p++;
        return literal(parse_escape(ps));
    }
    ps->p++;
    return literal((uint32_t)(unsigned char)c);
}

static node *parse_post(parser *ps) {
    node *n = parse_atom(ps);
    for (;;) {
        char c = *ps->p;
        if (c == '*') n = mk(N_STAR, n, NULL), ps->p++;
        else if (c == '+') n = mk(N_PLUS, n, NULL), ps->p++;
        else if (c == '?') n = mk(N_OPT, n, NULL), ps->p++;
        else if (c == '{' && ps->p[1] >= '0' && ps->p[1] <= '9') {
            char *e;
            long lo = strtol(ps->p + 1, &e, 10), hi = lo;
            if (*e == ',') hi = strtol(e + 1, &e, 10);
            if (*e != '}' || hi < lo) parse_fail(ps, "bad repetition");
            n = mk(N_REP, n, NULL);
            n->min = (int)lo;
            n->max = (int)hi;
            ps->p = e + 1;
        } else break;
    }
    return n;
}

static node *parse_cat(parser *ps) {
    node *n = NULL;
    while (*ps->p && *ps->p != '|' && *ps->p != ')') {
        node *m = parse_post(ps);
        n = n ? mk(N_CAT, n, m) : m;
    }
    return n ? n : mk(N_EMPTY, NULL, NULL);
}

static node *parse_alt(parser *ps) {
    node *n = parse_cat(ps);
    while (*ps->p == '|') {
        ps->p++;
        n = mk(N_ALT, n, parse_cat(ps));
    }
    return n;
}

static node *parse_re(const char *re) {
    parser ps = {re, re};
    node *n = parse_alt(&ps);
    if (*ps.p) parse_fail(&ps, "unbalanced )");
    return n;
}

static node *macro_node(const char *name, size_t len) {
    for (int i = 0; i < NMACROS; i++)
        if (strlen(macros[i].name) == len && !strncmp(macros[i].name, name, len)) {
            if (!macro_ast[i]) macro_ast[i] = parse_re(macros[i].re);
            return macro_ast[i];
        }
    die("ptb: unknown lexer macro {%.*s}", (int)len, name);
}

/* ------------------------------------------------------------ NFA */

enum { S_SPLIT = -1, S_MATCH = -2 };
typedef struct {
    int cls; /* class index, or S_SPLIT / S_MATCH */
    int out, out1;
} nstate;

static nstate *st;
static int nst, cap_st;

static int st_new(int cls, int out, int out1) {
    if (nst == cap_st) {
        cap_st = cap_st ? 2 * cap_st : 4096;
        st = xrealloc(st, (size_t)cap_st * sizeof(nstate));
    }
    st[nst] = (nstate){cls, out, out1};
    return nst++;
}

/* Thompson construction, built backwards: the fragment for n, continuing
 * at state `next`; returns its start. */
static int compile(const node *n, int next) {
    switch (n->t) {
    case N_CLASS: return st_new(n->cls, next, -1);
    case N_CAT: return compile(n->a, compile(n->b, next));
    case N_ALT: {
        int a = compile(n->a, next), b = compile(n->b, next);
        return st_new(S_SPLIT, a, b);
    }
    case N_OPT: return st_new(S_SPLIT, compile(n->a, next), next);
    case N_STAR: {
        int s = st_new(S_SPLIT, -1, next);
        int a = compile(n->a, s); /* may move st: assign after the call */
        st[s].out = a;
        return s;
    }
    case N_PLUS: {
        int s = st_new(S_SPLIT, -1, next);
        int a = compile(n->a, s);
        st[s].out = a;
        return a;
    }
    case N_REP: {
        int cur = next;
        for (int i = n->min; i < n->max; i++) cur = st_new(S_SPLIT, compile(n->a, cur), next);
        for (int i = 0; i < n->min; i++) cur = compile(n->a, cur);
        return cur;
    }
    case N_EMPTY: return next;
    }
    return next;
}

/* ------------------------------------------------------------ rules */

enum {
    A_TOK,      /* the matched text */
    A_SKIP,     /* no token */
    A_NL,       /* end of an output line (tokenizeNLs) */
    A_PUSH,     /* yypushback(arg): token is the text less its last arg units */
    A_NBSP,     /* normalizeSpace: ' ' -> U+00A0 */
    A_MDASH,    /* "--" */
    A_AMP,      /* &amp; -> & */
    A_SOFT,     /* remove soft hyphens */
    A_QLEFT,    /* handleQuotes(probablyLeft=true) */
    A_QRIGHT,   /* handleQuotes(probablyLeft=false) */
    A_FRAC2,    /* normalizeFractions */
    A_CURRENCY, /* normalizeCurrency */
    A_ACRONYM,  /* the sentence-final acronym rule */
    A_REPEAT,   /* token whole, then the final period again (yypushback(1)) */
    A_PHONE,    /* no-break spaces and -LRB- -RRB- */
    A_PARENS,   /* -LRB- -RRB- */
    A_STR,      /* a fixed string */
    A_HYPHENS,  /* 3 or 4 hyphens -> "--" */
    A_ELLIPSIS, /* "..." */
    A_DELETE    /* untokenizable: deleted */
};

typedef struct {
    const char *r1, *r2; /* r1/r2: r2 is trailing context (NULL: none) */
    int action, arg;
    const char *str;
} rule;

/* The rules of PTBLexer.flex in their order, less the strictTreebank3 one. */
static const rule rules[] = {
    {"c[+][+]", NULL, A_TOK, 0, NULL},
    {"(c|f)#", NULL, A_TOK, 0, NULL},
    {"cannot", NULL, A_PUSH, 3, NULL},
    {"'twas", NULL, A_PUSH, 3, NULL},
    {"'tis", NULL, A_PUSH, 2, NULL},
    {"gonna|gotta|lemme|gimme|wanna", NULL, A_PUSH, 2, NULL},
    {"{SGML}", NULL, A_NBSP, 0, NULL},
    {"{SPMDASH}", NULL, A_MDASH, 0, NULL},
    {"{SPAMP}", NULL, A_AMP, 0, NULL},
    {"{SPPUNC}", NULL, A_TOK, 0, NULL},
    {"{WORD}", "{REDAUX}", A_SOFT, 0, NULL},
    {"{SWORD}", "{SREDAUX}", A_SOFT, 0, NULL},
    {"{WORD}", NULL, A_SOFT, 0, NULL},
    {"{APOWORD}", NULL, A_TOK, 0, NULL},
    {"{APOWORD2}", "[:letter:]", A_TOK, 0, NULL},
    {"{FULLURL}", NULL, A_TOK, 0, NULL},
    {"{LIKELYURL}", NULL, A_TOK, 0, NULL},
    {"{EMAIL}", NULL, A_TOK, 0, NULL},
    {"{TWITTER}", NULL, A_TOK, 0, NULL},
    {"{REDAUX}", "[^A-Za-z]", A_QRIGHT, 0, NULL},
    {"{SREDAUX}", "[^A-Za-z]", A_QRIGHT, 0, NULL},
    {"{DATE}", NULL, A_TOK, 0, NULL},
    {"{NUMBER}", NULL, A_SOFT, 0, NULL},
    {"{SUBSUPNUM}", NULL, A_TOK, 0, NULL},
    {"{FRAC}", NULL, A_NBSP, 0, NULL},
    {"{FRAC2}", NULL, A_FRAC2, 0, NULL},
    {"{TBSPEC}", NULL, A_AMP, 0, NULL},
    {"{THING3}", NULL, A_TOK, 0, NULL},
    {"{DOLSIGN}", NULL, A_TOK, 0, NULL},
    {"{DOLSIGN2}", NULL, A_CURRENCY, 0, NULL},
    {"{ACRONYM}",
     "({SPACENLS})([A]bout|[A]ccording|[A]dditionally|[A]fter|[A]n|[A]|[A]s|[A]t|[B]ut|[E]arlier|[H]e|[H]er|[H]ere|"
     "[H]owever|[I]f|[I]n|[I]t|[L]ast|[M]any|[M]ore|[M]r\\.|[M]s\\.|[N]ow|[O]nce|[O]ne|[O]ther|[O]ur|[S]he|[S]ince|"
     "[S]o|[S]ome|[S]uch|[T]hat|[T]he|[T]heir|[T]hen|[T]here|[T]hese|[T]hey|[T]his|[W]e|[W]hen|[W]hile|[W]hat|[Y]et|"
     "[Y]ou|{SGML}){SPACENL}",
     A_ACRONYM, 0, NULL},
    {"{ABBREV3}", "{SPACENL}?[:digit:]", A_TOK, 0, NULL},
    {"(pt[eyEY]|co)\\.", "{SPACE}(ltd|lim)", A_TOK, 0, NULL},
    {"{ABBREV1}", "{SENTEND}", A_REPEAT, 0, NULL},
    {"{ABBREV1}", "[^][^]", A_TOK, 0, NULL},
    {"{ABBREV1}", NULL, A_REPEAT, 0, NULL},
    {"{ABBREV2}", NULL, A_TOK, 0, NULL},
    {"{ABBREV4}", "{SPACE}", A_TOK, 0, NULL},
    {"{ACRO}", "{SPACENL}", A_TOK, 0, NULL},
    {"{TBSPEC2}", "{SPACENL}", A_TOK, 0, NULL},
    {"{FILENAME}", "({SPACENL}|[.?!,])", A_TOK, 0, NULL},
    {"{WORD}\\.", "{INSENTP}", A_SOFT, 0, NULL},
    {"{PHONE}", NULL, A_PHONE, 0, NULL},
    {"{DBLQUOT}", "[A-Za-z0-9$]", A_QLEFT, 0, NULL},
    {"{DBLQUOT}", NULL, A_QRIGHT, 0, NULL},
    {"\\x7f", NULL, A_SKIP, 0, NULL},
    {"{LESSTHAN}", NULL, A_STR, 0, "<"},
    {"{GREATERTHAN}", NULL, A_STR, 0, ">"},
    {"{SMILEY}", "[^A-Za-z0-9]", A_PARENS, 0, NULL},
    {"{ASIANSMILEY}", NULL, A_PARENS, 0, NULL},
    {"\\{", NULL, A_STR, 0, "-LCB-"},
    {"\\}", NULL, A_STR, 0, "-RCB-"},
    {"\\[", NULL, A_STR, 0, "-LSB-"},
    {"\\]", NULL, A_STR, 0, "-RSB-"},
    {"\\(", NULL, A_STR, 0, "-LRB-"},
    {"\\)", NULL, A_STR, 0, "-RRB-"},
    {"{HYPHENS}", NULL, A_HYPHENS, 0, NULL},
    {"{LDOTS}", NULL, A_ELLIPSIS, 0, NULL},
    {"{FNMARKS}", NULL, A_TOK, 0, NULL},
    {"{ASTS}", NULL, A_TOK, 0, NULL},
    {"{INSENTP}", NULL, A_TOK, 0, NULL},
    {"[?!]+", NULL, A_TOK, 0, NULL},
    {"[.\\u00A1\\u00BF\\u037E\\u0589\\u061F\\u06D4\\u0700-\\u0702\\u07FA\\u3002]", NULL, A_TOK, 0, NULL},
    {"=", NULL, A_TOK, 0, NULL},
    {"\\/", NULL, A_TOK, 0, NULL},
    {"{HTHING}\\.", "{INSENTP}", A_SOFT, 0, NULL},
    {"{HTHING}", NULL, A_SOFT, 0, NULL},
    {"{THING}\\.", "{INSENTP}", A_TOK, 0, NULL},
    {"{THING}", NULL, A_TOK, 0, NULL},
    {"{THINGA}\\.", "{INSENTP}", A_AMP, 0, NULL},
    {"{THINGA}", NULL, A_AMP, 0, NULL},
    {"'", "[A-Za-z][^ \\t\\n\\r\\u00A0]", A_QLEFT, 0, NULL},
    {"{REDAUX}", NULL, A_QRIGHT, 0, NULL},
    {"{SREDAUX}", NULL, A_QRIGHT, 0, NULL},
    {"{QUOTES}", NULL, A_QRIGHT, 0, NULL},
    {"{FAKEDUCKFEET}", NULL, A_TOK, 0, NULL},
    {"{MISCSYMBOL}", NULL, A_TOK, 0, NULL},
    {"\\0|{SPACES}|[\\u200B\\u200E-\\u200F\\uFEFF]", NULL, A_SKIP, 0, NULL},
    {"{NEWLINE}", NULL, A_NL, 0, NULL},
    {"&nbsp;", NULL, A_SKIP, 0, NULL},
    {".", NULL, A_DELETE, 0, NULL},
};
#define NRULES ((int)(sizeof rules / sizeof rules[0]))

typedef struct {
    int s1, s2;          /* NFA starts of r1 and r2 (-1: none) */
    uint64_t first[2];   /* ASCII units that can start r1 */
    int first_nonascii;  /* whether a unit >= 0x80 can */
} crule;
static crule crules[NRULES];

/* NFA state sets: epsilon closures (mark: generation stamps) */
static int *mark, *set_a;
static int *dstart; /* NFA start -> DFA state (-1: not yet), see below */
static int gen;

static void next_gen(void) {
    if (gen == 0x7fffffff) { /* wrap around: no stale mark may equal a new generation */
        memset(mark, 0, (size_t)nst * sizeof(int));
        gen = 0;
    }
    gen++;
}

static void add_state(int *set, int *n, int s) {
    if (s < 0 || mark[s] == gen) return;
    mark[s] = gen;
    if (st[s].cls == S_SPLIT) {
        add_state(set, n, st[s].out);
        add_state(set, n, st[s].out1);
    } else set[(*n)++] = s;
}

static void first_units(crule *cr) {
    int n = 0;
    next_gen();
    add_state(set_a, &n, cr->s1);
    for (int i = 0; i < n; i++) {
        int c = st[set_a[i]].cls;
        if (c == S_MATCH) die("ptb: a lexer rule matches the empty string");
        const cclass *k = &classes[c];
        for (uint32_t u = 0; u < 128; u++)
            if (class_has(k, u)) cr->first[u >> 6] |= (uint64_t)1 << (u & 63);
        if (k->neg || k->pred) cr->first_nonascii = 1;
        for (int j = 0; j < k->nr; j++)
            if (k->r[2 * j + 1] >= 0x80) cr->first_nonascii = 1;
    }
}

static void build(void) {
    for (int i = 0; i < NRULES; i++) {
        crules[i].s1 = compile(parse_re(rules[i].r1), st_new(S_MATCH, -1, -1));
        crules[i].s2 = rules[i].r2 ? compile(parse_re(rules[i].r2), st_new(S_MATCH, -1, -1)) : -1;
    }
    for (int c = 0; c < nclasses; c++)
        for (uint32_t u = 0; u < 128; u++)
            if (class_has_slow(&classes[c], u)) classes[c].ascii[u >> 6] |= (uint64_t)1 << (u & 63);
    mark = xcalloc((size_t)nst, sizeof(int));
    dstart = xmalloc((size_t)nst * sizeof(int));
    for (int i = 0; i < nst; i++) dstart[i] = -1;
    set_a = xmalloc((size_t)nst * sizeof(int));
    for (int i = 0; i < NRULES; i++) first_units(&crules[i]);
    /* the parse trees are only needed to build the automata */
    for (int i = 0; i < nnodes; i++) free(all_nodes[i]);
    free(all_nodes);
    all_nodes = NULL;
    nnodes = cap_nodes = 0;
}

static pthread_once_t built = PTHREAD_ONCE_INIT;
/* one lexer at a time: the simulation's sets are shared */
static pthread_mutex_t lex_mu = PTHREAD_MUTEX_INITIALIZER;

/* The automata run as DFAs built lazily (subset construction on demand):
 * a DFA state is a sorted set of NFA states; its transitions on units < 128
 * are cached, others are computed each time (rare in captions). */
typedef struct {
    int *set, nset;
    int accept;
    int next[128]; /* -2 not computed yet, -1 dead */
} dstate;

static dstate *ds;
static int nds, cap_ds;
static int *dtab, dtcap; /* set -> DFA state */

static uint64_t hash_set(const int *v, int n) {
    uint64_t h = 1469598103934665603ULL;
    for (int i = 0; i < n; i++) h = (h ^ (uint32_t)v[i]) * 1099511628211ULL;
    return h ^ (h >> 29);
}

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

static void dtab_put(int id) {
    uint64_t j = hash_set(ds[id].set, ds[id].nset) & (uint64_t)(dtcap - 1);
    while (dtab[j] >= 0) j = (j + 1) & (uint64_t)(dtcap - 1);
    dtab[j] = id;
}

/* the DFA state for NFA states set[0..n) (sorted here), made if new */
static int dstate_for(int *set, int n) {
    if (n == 0) return -1;
    qsort(set, (size_t)n, sizeof(int), cmp_int);
    if (2 * (nds + 1) > dtcap) {
        dtcap = dtcap ? 2 * dtcap : 1024;
        free(dtab);
        dtab = xmalloc((size_t)dtcap * sizeof(int));
        memset(dtab, -1, (size_t)dtcap * sizeof(int));
        for (int i = 0; i < nds; i++) dtab_put(i);
    }
    uint64_t j = hash_set(set, n) & (uint64_t)(dtcap - 1);
    for (; dtab[j] >= 0; j = (j + 1) & (uint64_t)(dtcap - 1)) {
        const dstate *d = &ds[dtab[j]];
        if (d->nset == n && !memcmp(d->set, set, (size_t)n * sizeof(int))) return dtab[j];
    }
    if (nds == cap_ds) {
        cap_ds = cap_ds ? 2 * cap_ds : 1024;
        ds = xrealloc(ds, (size_t)cap_ds * sizeof(dstate));
    }
    dstate *d = &ds[nds];
    d->set = xmalloc((size_t)n * sizeof(int));
    memcpy(d->set, set, (size_t)n * sizeof(int));
    d->nset = n;
    d->accept = 0;
    for (int i = 0; i < n; i++) d->accept |= st[set[i]].cls == S_MATCH;
    for (int i = 0; i < 128; i++) d->next[i] = -2;
    dtab[j] = nds;
    return nds++;
}

static int dfa_start(int start) {
    if (dstart[start] == -1) {
        int n = 0;
        next_gen();
        add_state(set_a, &n, start);
        dstart[start] = dstate_for(set_a, n);
    }
    return dstart[start];
}

static int dfa_step(int d, uint16_t u) {
    if (u < 128 && ds[d].next[u] != -2) return ds[d].next[u];
    int n = 0;
    next_gen();
    for (int i = 0; i < ds[d].nset; i++) {
        const nstate *q = &st[ds[d].set[i]];
        if (q->cls >= 0 && class_has(&classes[q->cls], u)) add_state(set_a, &n, q->out);
    }
    int nd = dstate_for(set_a, n); /* may move ds */
    if (u < 128) ds[d].next[u] = nd;
    return nd;
}

/* Run the automaton from `start` over t[pos..n). Returns the longest match
 * length (-1: none); with acc, acc[k] = 1 for every length k that matches. */
static int simulate(int start, const uint16_t *t, int pos, int n, char *acc) {
    int best = -1;
    int d = dfa_start(start);
    for (int i = pos; d >= 0; i++) {
        if (ds[d].accept) {
            best = i - pos;
            if (acc) acc[i - pos] = 1;
        }
        if (i == n) break;
        d = dfa_step(d, t[i]);
    }
    return best;
}

/* Total length of rule r at pos (trailing context included), or -1; *len1
 * gets the length of the r1 part. */
static int rule_match(int r, const uint16_t *t, int pos, int n, int *len1, char *acc) {
    const crule *cr = &crules[r];
    uint16_t u = t[pos];
    if (u < 128 ? !((cr->first[u >> 6] >> (u & 63)) & 1) : !cr->first_nonascii) return -1;
    if (cr->s2 < 0) {
        int l = simulate(cr->s1, t, pos, n, NULL);
        *len1 = l;
        return l;
    }
    /* acc is all zero between calls: only entries up to l1max get set */
    int l1max = simulate(cr->s1, t, pos, n, acc);
    if (l1max < 0) return -1;
    int best = -1;
    /* the longest whole match; for it, the longest r1 (JFlex 1.5) */
    for (int l1 = l1max; l1 >= 1; l1--) {
        if (!acc[l1]) continue;
        int l2 = simulate(cr->s2, t, pos + l1, n, NULL);
        if (l2 >= 0 && l1 + l2 > best) {
            best = l1 + l2;
            *len1 = l1;
        }
    }
    memset(acc, 0, (size_t)l1max + 1);
    return best;
}

/* ------------------------------------------------------------ text */

typedef struct {
    char *s;
    size_t n, cap;
} sbuf;

static void sb_putc(sbuf *b, char c) {
    if (b->n + 2 > b->cap) {
        b->cap = b->cap ? 2 * b->cap : 256;
        b->s = xrealloc(b->s, b->cap);
    }
    b->s[b->n++] = c;
    b->s[b->n] = 0;
}

static void sb_put_cp(sbuf *b, uint32_t cp) {
    utf8proc_uint8_t tmp[4];
    utf8proc_ssize_t k = utf8proc_encode_char((utf8proc_int32_t)cp, tmp);
    for (utf8proc_ssize_t i = 0; i < k; i++) sb_putc(b, (char)tmp[i]);
}

/* UTF-8 to UTF-16 units; a malformed sequence becomes U+FFFD */
static uint16_t *to_utf16(const char *s, size_t len, int *nout) {
    uint16_t *u = xmalloc((len * 2 + 1) * sizeof(uint16_t));
    int n = 0;
    size_t i = 0;
    while (i < len) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(len - i), &cp);
        if (k <= 0) {
            cp = 0xFFFD;
            k = 1;
        }
        i += (size_t)k;
        if (cp >= 0x10000) {
            cp -= 0x10000;
            u[n++] = (uint16_t)(0xD800 + (cp >> 10));
            u[n++] = (uint16_t)(0xDC00 + (cp & 0x3FF));
        } else u[n++] = (uint16_t)cp;
    }
    *nout = n;
    return u;
}

/* token units (after the action) to code points */
static int units_to_cps(const uint16_t *u, int n, uint32_t *cp) {
    int m = 0;
    for (int i = 0; i < n; i++) {
        uint32_t c = u[i];
        if (c >= 0xD800 && c <= 0xDBFF && i + 1 < n && u[i + 1] >= 0xDC00 && u[i + 1] <= 0xDFFF) {
            c = 0x10000 + ((c - 0xD800) << 10) + (u[i + 1] - 0xDC00);
            i++;
        } else if (c >= 0xD800 && c <= 0xDFFF) c = '?'; /* Java's encoder writes a lone surrogate as '?' */
        cp[m++] = c;
    }
    return m;
}

static int gcat(uint32_t c) { return c < 0x110000 ? (int)utf8proc_category((utf8proc_int32_t)c) : 0; }

/* Java's isCased: a letter of category Lu, Ll or Lt */
static int is_cased(uint32_t c) {
    int k = gcat(c);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT;
}

/* inside a word for Java's word BreakIterator: letters, marks, numbers */
static int word_char(uint32_t c) {
    int k = gcat(c);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) ||
           (k >= UTF8PROC_CATEGORY_MN && k <= UTF8PROC_CATEGORY_ME) ||
           (k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO);
}

/* joins two word characters: dashes, soft hyphen, U+2027, quotes, period */
static int mid_word(uint32_t c) {
    return gcat(c) == UTF8PROC_CATEGORY_PD || c == 0xAD || c == 0x2027 || c == '"' || c == '\'' || c == '.';
}

/* ConditionalSpecialCasing's Final_Cased condition for the sigma at i: a
 * cased letter before it and none after it, within its word (approximating
 * the JDK word BreakIterator, as Java 17 behaves on "ΟΣ-L", "ΟΣ.a", "ΟΣ:a") */
static int final_sigma(const uint32_t *cp, int n, int i) {
    int before = 0;
    for (int j = i - 1; j >= 0; j--) {
        if (is_cased(cp[j])) {
            before = 1;
            break;
        }
        if (word_char(cp[j]) || (mid_word(cp[j]) && j > 0 && word_char(cp[j - 1]))) continue;
        break;
    }
    if (!before) return 0;
    for (int j = i + 1; j < n; j++) {
        if (is_cased(cp[j])) return 0;
        if (word_char(cp[j]) || (mid_word(cp[j]) && j + 1 < n && word_char(cp[j + 1]))) continue;
        break;
    }
    return 1;
}

/* Java's String.toLowerCase(Locale.ENGLISH): the simple lowercase mapping,
 * except U+0130 -> "i\u0307" and the final sigma */
static void put_lower(sbuf *b, const uint32_t *cp, int n) {
    for (int i = 0; i < n; i++) {
        uint32_t c = cp[i];
        if (c == 0x130) {
            sb_put_cp(b, 'i');
            sb_put_cp(b, 0x307);
        } else if (c == 0x3A3) sb_put_cp(b, final_sigma(cp, n, i) ? 0x3C2 : 0x3C3);
        else sb_put_cp(b, (uint32_t)utf8proc_tolower((utf8proc_int32_t)c));
    }
}

static const char *const dropped[] = {"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".",
                                      "?",  "!", ",",  ":", "-",     "--",    "...",   ";"};

int ptb_is_dropped(const char *tok) {
    for (size_t i = 0; i < sizeof dropped / sizeof dropped[0]; i++)
        if (!strcmp(tok, dropped[i])) return 1;
    return 0;
}

/* ------------------------------------------------------------ actions */

typedef struct {
    uint16_t *u;
    int n, cap;
} ubuf;

static void ub_put(ubuf *b, uint16_t c) {
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 64;
        b->u = xrealloc(b->u, (size_t)b->cap * sizeof(uint16_t));
    }
    b->u[b->n++] = c;
}

static void ub_puts(ubuf *b, const char *s) {
    while (*s) ub_put(b, (uint16_t)(unsigned char)*s++);
}

static int lower_ascii(uint16_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* at t[i]: "&amp;" in any case (AMP_PATTERN is (?i:&amp;)) */
static int at_amp(const uint16_t *t, int i, int n) {
    static const char amp[] = "&amp;";
    if (n - i < 5) return 0;
    for (int k = 0; k < 5; k++)
        if (lower_ascii(t[i + k]) != amp[k]) return 0;
    return 1;
}

/* "&apos;" or "&quot;" (case-sensitive, as the Java patterns) */
static int at_entity(const uint16_t *t, int i, int n, const char *e) {
    int l = (int)strlen(e);
    if (n - i < l) return 0;
    for (int k = 0; k < l; k++)
        if (t[i + k] != (uint16_t)(unsigned char)e[k]) return 0;
    return 1;
}

/* latexQuotes(): ' and &apos; become ` (left) or ' (right), " and &quot;
 * become `` or ''; then the curly and CP1252 quotes */
static void latex_quotes(ubuf *o, const uint16_t *t, int n, int left) {
    for (int i = 0; i < n;) {
        uint16_t c = t[i];
        if (c == '\'' || at_entity(t, i, n, "&apos;")) {
            ub_puts(o, left ? "`" : "'");
            i += c == '\'' ? 1 : 6;
        } else if (c == '"' || at_entity(t, i, n, "&quot;")) {
            ub_puts(o, left ? "``" : "''");
            i += c == '"' ? 1 : 6;
        } else {
            if (c == 0x91 || c == 0x2018 || c == 0x201B || c == 0x2039) ub_puts(o, "`");
            else if (c == 0x92 || c == 0x2019 || c == 0x203A) ub_puts(o, "'");
            else if (c == 0x93 || c == 0x201C || c == 0xAB) ub_puts(o, "``");
            else if (c == 0x94 || c == 0x201D || c == 0xBB) ub_puts(o, "''");
            else ub_put(o, c);
            i++;
        }
    }
}

/* Apply rule r's action to the match t[pos..pos+len1); the token (if any)
 * goes to o. Returns the number of units consumed. *emit: 0 none, 1 token,
 * 2 newline. */
static int act(int r, const uint16_t *t, int pos, int len1, ubuf *o, int *emit) {
    const rule *R = &rules[r];
    const uint16_t *m = t + pos;
    o->n = 0;
    *emit = 1;
    switch (R->action) {
    case A_TOK:
        for (int i = 0; i < len1; i++) ub_put(o, m[i]);
        return len1;
    case A_SKIP:
    case A_DELETE: *emit = 0; return len1;
    case A_NL: *emit = 2; return len1;
    case A_PUSH:
        for (int i = 0; i < len1 - R->arg; i++) ub_put(o, m[i]);
        return len1 - R->arg;
    case A_NBSP:
        for (int i = 0; i < len1; i++) ub_put(o, m[i] == ' ' ? 0xA0 : m[i]);
        return len1;
    case A_MDASH: ub_puts(o, "--"); return len1;
    case A_AMP:
        for (int i = 0; i < len1;) {
            if (at_amp(m, i, len1)) {
                ub_put(o, '&');
                i += 5;
            } else ub_put(o, m[i++]);
        }
        return len1;
    case A_SOFT:
        for (int i = 0; i < len1; i++)
            if (m[i] != 0xAD) ub_put(o, m[i]);
        if (o->n == 0) ub_put(o, '-'); /* removeSoftHyphens: never an empty token */
        return len1;
    case A_QLEFT:
    case A_QRIGHT: latex_quotes(o, m, len1, R->action == A_QLEFT); return len1;
    case A_FRAC2: {
        uint16_t c = m[0];
        if (c == 0xBC) ub_puts(o, "1/4");
        else if (c == 0xBD) ub_puts(o, "1/2");
        else if (c == 0xBE) ub_puts(o, "3/4");
        else if (c == 0x2153) ub_puts(o, "1/3");
        else if (c == 0x2154) ub_puts(o, "2/3");
        else ub_put(o, c);
        return len1;
    }
    case A_CURRENCY: {
        uint16_t c = m[0];
        if (c == 0xA2) ub_puts(o, "cents");
        else if (c == 0xA3) ub_puts(o, "#");
        else if (c == 0x80 || c == 0xA4 || c == 0x20A0 || c == 0x20AC) ub_puts(o, "$");
        else ub_put(o, c);
        return len1;
    }
    case A_ACRONYM:
        /* len1 is exactly the acronym (trailing spaces are context here, so
         * the Java action's workaround for JFlex has nothing to undo) */
        if (len1 == 2) { /* "I.", etc.: the letter; the period next time */
            ub_put(o, m[0]);
            return 1;
        }
        for (int i = 0; i < len1; i++) ub_put(o, m[i]);
        return len1 - 1;
    case A_REPEAT:
        for (int i = 0; i < len1; i++) ub_put(o, m[i]);
        return len1 - 1;
    case A_PHONE:
    case A_PARENS:
        for (int i = 0; i < len1; i++) {
            if (m[i] == '(') ub_puts(o, "-LRB-");
            else if (m[i] == ')') ub_puts(o, "-RRB-");
            else ub_put(o, m[i] == ' ' && R->action == A_PHONE ? 0xA0 : m[i]);
        }
        return len1;
    case A_STR: ub_puts(o, R->str); return len1;
    case A_HYPHENS:
        if (len1 >= 3 && len1 <= 4) ub_puts(o, "--");
        else
            for (int i = 0; i < len1; i++) ub_put(o, m[i]);
        return len1;
    case A_ELLIPSIS: ub_puts(o, "..."); return len1;
    }
    return len1;
}

/* ------------------------------------------------------------ driver */

void ptb_tokenize_lines(const char *const *in, size_t n, char **out, int mode) {
    pthread_once(&built, build);
    for (size_t i = 0; i < n; i++) out[i] = NULL;
    if (n == 0) return;
    /* the file pycocoevalcap writes: captions joined by '\n' (a '\n' inside
     * a caption is a space), without a final newline; other line breaks are
     * spaces too (see ptb.h) */
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += strlen(in[i]) + 1;
    char *text = xmalloc(total + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (i) text[k++] = '\n';
        for (const char *p = in[i]; *p; p++) text[k++] = *p == '\n' || *p == '\r' || *p == '\v' || *p == '\f' ? ' ' : *p;
    }
    text[k] = 0;
    int len;
    uint16_t *t = to_utf16(text, k, &len);
    free(text);
    /* (U+0085 is not among them: PTBLexer reads it as an ellipsis) */
    for (int i = 0; i < len; i++)
        if (t[i] == 0x2028 || t[i] == 0x2029) t[i] = ' ';

    pthread_mutex_lock(&lex_mu);
    char *acc = xcalloc((size_t)len + 2, 1);
    uint32_t *cps = NULL;
    int cps_cap = 0;
    ubuf tok = {0};
    sbuf line = {0};
    sb_putc(&line, 0);
    line.n = 0;
    size_t li = 0;
    int pos = 0;
    while (pos < len) {
        int best = 0, br = -1, blen1 = 0;
        for (int r = 0; r < NRULES; r++) {
            int l1 = 0, l = rule_match(r, t, pos, len, &l1, acc);
            if (l > best) { /* strictly longer: the earlier rule keeps a tie */
                best = l;
                br = r;
                blen1 = l1;
            }
        }
        if (br < 0) die("ptb: internal error: no lexer rule matches");
        int emit;
        pos += act(br, t, pos, blen1, &tok, &emit);
        if (emit == 2) {
            if (li < n) out[li++] = xstrdup(line.s);
            line.n = 0;
            line.s[0] = 0;
        } else if (emit == 1) {
            if (tok.n + 1 > cps_cap) {
                cps_cap = tok.n + 64;
                cps = xrealloc(cps, (size_t)cps_cap * sizeof(uint32_t));
            }
            int nc = units_to_cps(tok.u, tok.n, cps);
            sbuf w = {0};
            put_lower(&w, cps, nc);
            if (w.s && !(mode == PTB_PYCOCO && ptb_is_dropped(w.s))) {
                if (line.n) sb_putc(&line, ' ');
                for (size_t j = 0; j < w.n; j++) sb_putc(&line, w.s[j]);
            }
            free(w.s);
        }
    }
    pthread_mutex_unlock(&lex_mu);
    if (li < n) out[li++] = xstrdup(line.s);
    while (li < n) out[li++] = xstrdup("");
    free(line.s);
    free(tok.u);
    free(cps);
    free(acc);
    free(t);
}

char *ptb_tokenize(const char *caption, int mode) {
    char *out;
    ptb_tokenize_lines(&caption, 1, &out, mode);
    return out;
}
