/* tag-train - pretrain a CLAP's CNN14 audio tower on multi-label tags (as
 * PANNs pretrains WavCaps' CNN14 on AudioSet); the work is in lib/tag_train.c. */
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "tag_train.h"
#include "util.h"

static const char usage[] =
    "Usage: tag-train --init MODEL --mel MEL.mp --labels LABELS -o OUT [OPTIONS]\n"
    "Train the CNN14 audio tower of the CLAP file MODEL (CNN14-BERT, as clap-audio\n"
    "reads it) to tag clips, as PANNs trains CNN14 on AudioSet: the tower's hidden\n"
    "features relu(audio_proj.0(CNN14(mel))), a linear layer to one logit a class,\n"
    "a sigmoid, binary cross-entropy averaged over classes and clips. OUT is MODEL\n"
    "with the audio tower trained (audio_proj.2 and the text tower unchanged) and\n"
    "the head added as tag.fc_audioset.weight/.bias (classes in the metadata\n"
    "tag.classes); clap-audio, clap-text and clap-train read it as they read MODEL.\n"
    "A new model: clap-train --new ... --save-init MODEL first.\n"
    "MEL.mp: a wav2mel stream keyed by audio file name. LABELS: the sound world's\n"
    "SPLIT_events.jsonl (file_name; background.cls and events[].cls are the\n"
    "labels) or KEY<TAB>label,label,... lines. A clip without labels, or a label\n"
    "key without a clip, is named on stderr and skipped (exit status 3).\n"
    "\n"
    "  -m, --init MODEL         the model to start from (required)\n"
    "      --mel FILE           the mel stream (required)\n"
    "      --labels FILE        the labels (required)\n"
    "      --classes FILE       the class list, one a line (default: the sorted set\n"
    "                           of the training clips' labels); other labels are\n"
    "                           named and ignored\n"
    "  -o, --output FILE        the trained model (required; written atomically)\n"
    "      --epochs N           epochs (20)\n"
    "      --bs N               clips per batch (32, as PANNs; a last partial batch\n"
    "                           is dropped)\n"
    "      --lr X               learning rate (1e-3, as PANNs)\n"
    "      --wd X               AdamW weight decay (0, as PANNs)\n"
    "      --warmup E           linear warm-up from 0 over E epochs (0: none)\n"
    "      --seed S             shuffling, the head's initialisation, crops, dropout\n"
    "                           and SpecAugment (409194)\n"
    "      --no-shuffle         clips in stream order\n"
    "      --no-augment         no dropout, SpecAugment or random crop\n"
    "      --frames N           frames per clip: a random window of a longer clip,\n"
    "                           a shorter one padded with -100 dB (default: longest)\n"
    "      --max-steps N        stop after N steps (0: the whole run)\n"
    "      --val MEL.mp[,LABELS]\n"
    "                           after every epoch, eval-mode mAP over classes and\n"
    "                           mean ROC AUC on these clips (labels from LABELS, else\n"
    "                           from --labels)\n"
    "      --log FILE           a TSV line per step (loss, rate); validation lines\n"
    "      --save-grads FILE    the first step's gradients as a safetensors file\n"
    "                           (for tests)\n"
    "  -j, --threads N          threads for the matrix products (default: all cores)\n"
    "  -v, --verbose            each class's validation AP; -vv: a line per step\n"
    "  -q, --quiet              no progress, no summary\n"
    "  -h, --help               show this help\n"
    "\n"
    "SIGINT/SIGTERM: the step finishes, OUT is written with the model so far, exit 2.\n"
    "Exit status: 0 trained and written, 1 usage error, 2 fatal (unreadable model,\n"
    "stream or label file; a model of another architecture) or stopped by a\n"
    "signal, 3 trained and written but some keys or labels were skipped (named).\n";

enum { O_MEL = 256, O_LABELS, O_CLASSES, O_EPOCHS, O_BS, O_LR, O_WD, O_WARM, O_SEED, O_NOSHUF, O_NOAUG, O_FRAMES,
       O_MAXSTEPS, O_VAL, O_LOG, O_SAVEGRADS };

static volatile int stop_flag;
static void on_signal(int sig) {
    (void)sig;
    stop_flag = 1;
}

int main(int argc, char **argv) {
    tool_init("tag-train");
    static const struct option longopts[] = {
        {"init", required_argument, 0, 'm'},        {"mel", required_argument, 0, O_MEL},
        {"labels", required_argument, 0, O_LABELS}, {"classes", required_argument, 0, O_CLASSES},
        {"output", required_argument, 0, 'o'},      {"epochs", required_argument, 0, O_EPOCHS},
        {"bs", required_argument, 0, O_BS},         {"lr", required_argument, 0, O_LR},
        {"wd", required_argument, 0, O_WD},         {"warmup", required_argument, 0, O_WARM},
        {"seed", required_argument, 0, O_SEED},     {"no-shuffle", no_argument, 0, O_NOSHUF},
        {"no-augment", no_argument, 0, O_NOAUG},    {"frames", required_argument, 0, O_FRAMES},
        {"max-steps", required_argument, 0, O_MAXSTEPS}, {"val", required_argument, 0, O_VAL},
        {"log", required_argument, 0, O_LOG},       {"save-grads", required_argument, 0, O_SAVEGRADS},
        {"threads", required_argument, 0, 'j'},     {"verbose", no_argument, 0, 'v'},
        {"quiet", no_argument, 0, 'q'},             {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    tag_train_opts o;
    tag_train_defaults(&o);
    int c;
    while ((c = getopt_long(argc, argv, ":m:o:j:vqh", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': o.init = optarg; break;
        case O_MEL: o.mel = optarg; break;
        case O_LABELS: o.labels = optarg; break;
        case O_CLASSES: o.classes = optarg; break;
        case 'o': o.out = optarg; break;
        case O_EPOCHS: o.epochs = (int)parse_long("--epochs", optarg, 1, 100000); break;
        case O_BS: o.bs = (int)parse_long("--bs", optarg, 2, 1 << 16); break;
        case O_LR: o.lr = parse_double("--lr", optarg, 0, 10); break;
        case O_WD: o.wd = parse_double("--wd", optarg, 0, 10); break;
        case O_WARM: o.warmup = parse_double("--warmup", optarg, 0, 1e6); break;
        case O_SEED: o.seed = parse_long("--seed", optarg, 0, 0x7fffffffL); break;
        case O_NOSHUF: o.shuffle = 0; break;
        case O_NOAUG: o.augment = 0; break;
        case O_FRAMES: o.frames = (int)parse_long("--frames", optarg, 1, 1 << 24); break;
        case O_MAXSTEPS: o.max_steps = parse_long("--max-steps", optarg, 0, 1L << 40); break;
        case O_VAL: o.val = optarg; break;
        case O_LOG: o.log = optarg; break;
        case O_SAVEGRADS: o.save_grads = optarg; break;
        case 'j': o.threads = (int)parse_long("--threads", optarg, 1, 256); break;
        case 'v': tool_verbose++; break;
        case 'q': tool_quiet = 1; break;
        case 'h': fputs(usage, stdout); return EXIT_OK;
        default: die_bad_option(c, argv);
        }
    }
    if (optind < argc) die_usage("unexpected argument '%s'", argv[optind]);
    if (!o.init) die_usage("no model: give --init MODEL (a new one: clap-train --new ... --save-init MODEL)");
    if (!o.mel) die_usage("no mel stream: give --mel FILE");
    if (!o.labels) die_usage("no labels: give --labels FILE");
    if (!o.out) die_usage("no output: give -o OUT");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    o.stop = &stop_flag;
    return tag_train_run(&o);
}
