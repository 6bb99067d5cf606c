/* clap-train - contrastive training of a CLAP: WavCaps' CNN14-BERT or
 * SALSA's PaSST-RoBERTa (SALSA stages 1 and 2); the work is in
 * lib/clap_train.c. */
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "clap_train.h"
#include "dist.h"
#include "util.h"

static const char usage[] =
    "Usage: clap-train --init MODEL --mel MEL.mp --captions CAPTIONS -o OUT [OPTIONS]\n"
    "       clap-train --new --vocab VOCAB.txt [SIZES] --mel ... -o OUT [OPTIONS]\n"
    "       clap-train --new --vocab VOCAB.txt [SIZES] --save-init NEW\n"
    "Train the audio-text model MODEL (a CLAP file clap-audio and clap-text read:\n"
    "CNN14-BERT or SALSA's PaSST-RoBERTa, as the file says), or a new CNN14-BERT\n"
    "one, contrastively, as SALSA does, and write the trained model to OUT.\n"
    "MEL.mp: a wav2mel stream keyed by audio (PaSST-RoBERTa: wav2mel --frontend\n"
    "passt, each clip's kept 10-s segments); CAPTIONS: a Clotho/AudioCaps CSV\n"
    "(name ending in .csv, or --csv) or AUDIOKEY<TAB>CAPTION lines. An item is\n"
    "one (audio, caption) pair; items with the same audio are positives.\n"
    "\n"
    "  -m, --init MODEL         the model to start from\n"
    "      --new                a new model from SIZES (WavCaps' initialisation;\n"
    "                           default sizes: CNN14-BERT-base, as WavCaps')\n"
    "      --vocab FILE         the new model's BERT vocab.txt (its token count is\n"
    "                           the vocabulary: bert-base-uncased's for WavCaps)\n"
    "      --save-init FILE     write the new, untrained model to FILE as well;\n"
    "                           without --mel, write it and stop\n"
    "      --init-seed S        the new model's weights (default: --seed)\n"
    "SIZES (with --new):\n"
    "      --audio-channels C1,..,CN\n"
    "                           CNN14's ConvBlock widths (64,128,256,512,1024,2048)\n"
    "      --audio-blocks N, --audio-width W\n"
    "                           N ConvBlocks of W, 2W, 4W... channels (6, 64)\n"
    "      --n-mels M           mel bins (64; at least 2^N)\n"
    "      --embed D            the shared embedding: both projections (1024)\n"
    "      --text-layers L      BERT layers (12)\n"
    "      --text-width H       BERT hidden size (768)\n"
    "      --text-heads NH      attention heads, dividing H (12)\n"
    "      --text-ffn F         feed-forward size (3072)\n"
    "      --text-max-pos P     position embeddings (512)\n"
    "      --text-max-len N     tokens a caption, [CLS] [SEP] included (30)\n"
    "Training:\n"
    "      --mel FILE           the mel stream (required)\n"
    "      --captions FILE      the captions (required)\n"
    "      --csv                CAPTIONS is CSV whatever its name\n"
    "  -o, --output FILE        the trained model (required)\n"
    "      --epochs N           epochs (20)\n"
    "      --bs N               items per batch (64; a last partial batch is dropped)\n"
    "      --lr X               learning rate of all four groups (2e-5)\n"
    "      --lr-audio-encoder X, --lr-text-encoder X,\n"
    "      --lr-audio-proj X, --lr-text-proj X\n"
    "                           one group's learning rate\n"
    "      --min-lr X           the schedule's floor (1e-7)\n"
    "      --warmup E           linear warm-up from 0 over E epochs (1)\n"
    "      --rampdown-start E, --rampdown-stop E\n"
    "                           cosine decay from epoch E0 to E1 (1, 15)\n"
    "      --schedule S         salsa (update_lr, fractional epochs) or constant\n"
    "      --wd X               AdamW weight decay (0)\n"
    "      --tau X              temperature (0.05, fixed)\n"
    "      --seed S             shuffling and dropout (409194)\n"
    "      --no-shuffle         items in file order\n"
    "      --no-augment         no random training-time behaviour (dropout, crop,\n"
    "                           SpecAugment; patchout, stochastic depth)\n"
    "      --frames N           frames per clip: a random window of a longer clip,\n"
    "                           a shorter one padded with -100 dB (default: longest)\n"
    "      --teacher A.mp,T.mp  stage 2: one teacher's audio and caption embeddings\n"
    "                           (clap-audio / clap-text output); repeatable\n"
    "      --loss-weight W      weight of L_sup (1)\n"
    "      --distill-weight W   weight of L_dist (0; > 0 needs --teacher)\n"
    "      --no-quirk           L_sup weighted W, not W^2, when distilling\n"
    "      --max-steps N        stop after N steps (0: the whole run)\n"
    "      --log FILE           a TSV line per step (losses, the four rates)\n"
    "      --val MEL.mp,CAPTIONS\n"
    "                           text-to-audio mAP@10 after every epoch (eval mode);\n"
    "                           the best epoch's model is written to OUT.best\n"
    "      --checkpoint FILE    a checkpoint (model, AdamW moments, position) after\n"
    "                           every epoch (on SIGINT/SIGTERM: OUT.ckpt without it)\n"
    "      --resume FILE        continue from a checkpoint, bit for bit (no --init)\n"
    "PaSST-RoBERTa (SALSA's published values by default):\n"
    "      --patchout-t N, --patchout-f N\n"
    "                           structured patchout: time columns and frequency rows\n"
    "                           of patches dropped a segment (15, 2)\n"
    "      --drop-rate X, --attn-drop-rate X, --drop-path-rate X\n"
    "                           PaSST's dropout, attention dropout, stochastic\n"
    "                           depth (0, 0, 0: passt.py's defaults, as SALSA runs it)\n"
    "      --text-dropout X, --text-attn-dropout X\n"
    "                           the text tower's hidden and attention dropout\n"
    "                           (RoBERTa 0.2, 0.2 as SALSA sets them; BERT 0.1, 0.1)\n"
    "      --audio-list FILE    the clips' audio files (PATH or KEY<TAB>PATH lines, the\n"
    "                           key a file's base name) instead of --mel: every\n"
    "                           step's mel made from the waveform as SALSA's loader\n"
    "                           and AugmentMelSTFT make it in training: a clip over\n"
    "                           the fixed 30 s cut at a random offset, the mel edges\n"
    "                           jittered (fmin + [0, 10), fmax + 1000 - [0, 2000) Hz),\n"
    "                           both keyed by (seed, epoch, item)\n"
    "      --no-jitter, --no-crop\n"
    "                           without the jitter (fmin 0, fmax 15000 Hz), or with\n"
    "                           the first 30 s of a longer clip (--audio-list)\n"
    "      --micro-bs N         run each batch in micro-batches of N items (the\n"
    "                           gradient cache: the loss and gradients of the whole\n"
    "                           batch, the memory of N items)\n"
    "      --recompute          keep only each PaSST block's input and recompute the\n"
    "                           block in the backward pass (the same bits, less memory)\n"
    "      --save-grads FILE    the first step's gradients (both towers, summed over\n"
    "                           the ranks) as a safetensors file (for tests)\n"
    "  -j, --threads N          threads for the matrix products (default: all cores)\n"
    "  -v, --verbose            a line per step\n"
    "  -q, --quiet              no summary\n"
    "  -h, --help               show this help\n"
    "\n"
    "SIGINT/SIGTERM: the step finishes, a checkpoint is written, the run stops.\n"
    "Many machines (a make MPI=1 build): mpirun -n R clap-train ... splits every\n"
    "batch of --bs items over the R ranks (--bs a multiple of R); the loss sees the\n"
    "whole batch, gradients and BatchNorm statistics are summed over the ranks, so\n"
    "the run is the one-process run to rounding; rank 0 writes the files.\n"
    "Exit status: 0 trained and written, 1 usage error, 2 fatal (unreadable model,\n"
    "a model of another architecture or without a tower, unreadable stream, a\n"
    "caption whose audio is missing, a missing teacher embedding) or stopped by a\n"
    "signal (checkpoint written).\n";

enum { O_MEL = 256, O_CAPS, O_CSV, O_EPOCHS, O_BS, O_LR, O_LRAE, O_LRTE, O_LRAP, O_LRTP, O_MINLR, O_WARM, O_R0, O_R1,
       O_SCHED, O_WD, O_TAU, O_SEED, O_NOSHUF, O_NOAUG, O_FRAMES, O_TEACHER, O_LW, O_DW, O_NOQUIRK, O_MAXSTEPS,
       O_LOG, O_CKPT, O_RESUME, O_VAL, O_NEW, O_VOCAB, O_SAVEINIT, O_INITSEED, O_ACH, O_ABL, O_AW, O_NMELS, O_EMBED,
       O_TL, O_TW, O_TH, O_TF, O_TP, O_TML, O_MICRO, O_RECOMP, O_POT, O_POF, O_DROP, O_ADROP, O_DPATH, O_TDROP,
       O_TADROP, O_SAVEGRADS, O_AUDIOLIST, O_NOJITTER, O_NOCROP };

/* C1,C2,...: the ConvBlock widths */
static int parse_channels(const char *s, int *ch) {
    int n = 0;
    const char *p = s;
    for (;;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 65536) die_usage("--audio-channels '%s': give positive widths like 64,128,256", s);
        if (n == CLAP_MAX_BLOCKS) die_usage("--audio-channels '%s': at most %d ConvBlocks", s, CLAP_MAX_BLOCKS);
        ch[n++] = (int)v;
        if (!*end) break;
        if (*end != ',') die_usage("--audio-channels '%s': give positive widths like 64,128,256", s);
        p = end + 1;
    }
    return n;
}

/* SIGINT/SIGTERM: finish the step, write a checkpoint, stop */
static volatile int stop_flag;
static void on_signal(int sig) {
    (void)sig;
    stop_flag = 1;
}

int main(int argc, char **argv) {
    tool_init("clap-train");
    /* under mpirun (a make MPI=1 build): MPI may take its own arguments out of argv first */
    int ranks = dist_init(&argc, &argv);
    static const struct option longopts[] = {
        {"init", required_argument, 0, 'm'},       {"mel", required_argument, 0, O_MEL},
        {"captions", required_argument, 0, O_CAPS}, {"csv", no_argument, 0, O_CSV},
        {"output", required_argument, 0, 'o'},     {"epochs", required_argument, 0, O_EPOCHS},
        {"bs", required_argument, 0, O_BS},        {"lr", required_argument, 0, O_LR},
        {"lr-audio-encoder", required_argument, 0, O_LRAE}, {"lr-text-encoder", required_argument, 0, O_LRTE},
        {"lr-audio-proj", required_argument, 0, O_LRAP},    {"lr-text-proj", required_argument, 0, O_LRTP},
        {"min-lr", required_argument, 0, O_MINLR}, {"warmup", required_argument, 0, O_WARM},
        {"rampdown-start", required_argument, 0, O_R0}, {"rampdown-stop", required_argument, 0, O_R1},
        {"schedule", required_argument, 0, O_SCHED}, {"wd", required_argument, 0, O_WD},
        {"tau", required_argument, 0, O_TAU},      {"seed", required_argument, 0, O_SEED},
        {"no-shuffle", no_argument, 0, O_NOSHUF},  {"no-augment", no_argument, 0, O_NOAUG},
        {"frames", required_argument, 0, O_FRAMES}, {"teacher", required_argument, 0, O_TEACHER},
        {"loss-weight", required_argument, 0, O_LW}, {"distill-weight", required_argument, 0, O_DW},
        {"no-quirk", no_argument, 0, O_NOQUIRK},   {"max-steps", required_argument, 0, O_MAXSTEPS},
        {"log", required_argument, 0, O_LOG},      {"threads", required_argument, 0, 'j'},
        {"checkpoint", required_argument, 0, O_CKPT}, {"resume", required_argument, 0, O_RESUME},
        {"val", required_argument, 0, O_VAL},
        {"new", no_argument, 0, O_NEW},           {"vocab", required_argument, 0, O_VOCAB},
        {"save-init", required_argument, 0, O_SAVEINIT}, {"init-seed", required_argument, 0, O_INITSEED},
        {"audio-channels", required_argument, 0, O_ACH}, {"audio-blocks", required_argument, 0, O_ABL},
        {"audio-width", required_argument, 0, O_AW}, {"n-mels", required_argument, 0, O_NMELS},
        {"embed", required_argument, 0, O_EMBED},  {"text-layers", required_argument, 0, O_TL},
        {"text-width", required_argument, 0, O_TW}, {"text-heads", required_argument, 0, O_TH},
        {"text-ffn", required_argument, 0, O_TF},  {"text-max-pos", required_argument, 0, O_TP},
        {"text-max-len", required_argument, 0, O_TML},
        {"micro-bs", required_argument, 0, O_MICRO}, {"recompute", no_argument, 0, O_RECOMP},
        {"patchout-t", required_argument, 0, O_POT}, {"patchout-f", required_argument, 0, O_POF},
        {"drop-rate", required_argument, 0, O_DROP}, {"attn-drop-rate", required_argument, 0, O_ADROP},
        {"drop-path-rate", required_argument, 0, O_DPATH}, {"text-dropout", required_argument, 0, O_TDROP},
        {"text-attn-dropout", required_argument, 0, O_TADROP}, {"save-grads", required_argument, 0, O_SAVEGRADS},
        {"audio-list", required_argument, 0, O_AUDIOLIST}, {"no-jitter", no_argument, 0, O_NOJITTER},
        {"no-crop", no_argument, 0, O_NOCROP},
        {"verbose", no_argument, 0, 'v'},          {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},             {0, 0, 0, 0}};
    clap_train_opts o;
    clap_train_defaults(&o);
    int c, sized = 0, blocks = 0, width = 0, listed = 0;
    clap_sizes *z = &o.sizes;
    while ((c = getopt_long(argc, argv, ":m:o:j:vqh", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': o.init = optarg; break;
        case O_MEL: o.mel = optarg; break;
        case O_CAPS: o.captions = optarg; break;
        case O_CSV: o.csv = 1; break;
        case 'o': o.out = optarg; break;
        case O_EPOCHS: o.epochs = (int)parse_long("--epochs", optarg, 1, 100000); break;
        case O_BS: o.bs = (int)parse_long("--bs", optarg, 2, 1 << 16); break;
        case O_LR: for (int g = 0; g < 4; g++) o.lr[g] = parse_double("--lr", optarg, 0, 10); break;
        case O_LRAE: o.lr[0] = parse_double("--lr-audio-encoder", optarg, 0, 10); break;
        case O_LRTE: o.lr[1] = parse_double("--lr-text-encoder", optarg, 0, 10); break;
        case O_LRAP: o.lr[2] = parse_double("--lr-audio-proj", optarg, 0, 10); break;
        case O_LRTP: o.lr[3] = parse_double("--lr-text-proj", optarg, 0, 10); break;
        case O_MINLR: o.min_lr = parse_double("--min-lr", optarg, 0, 10); break;
        case O_WARM: o.warmup = parse_double("--warmup", optarg, 0, 1e6); break;
        case O_R0: o.ramp0 = parse_double("--rampdown-start", optarg, 0, 1e6); break;
        case O_R1: o.ramp1 = parse_double("--rampdown-stop", optarg, 0, 1e6); break;
        case O_SCHED:
            if (!strcmp(optarg, "salsa")) o.constant_lr = 0;
            else if (!strcmp(optarg, "constant")) o.constant_lr = 1;
            else die_usage("--schedule must be salsa or constant");
            break;
        case O_WD: o.wd = parse_double("--wd", optarg, 0, 10); break;
        case O_TAU: o.tau = parse_double("--tau", optarg, 1e-4, 100); break;
        case O_SEED: o.seed = parse_long("--seed", optarg, 0, 0x7fffffffL); break;
        case O_NOSHUF: o.shuffle = 0; break;
        case O_NOAUG: o.augment = 0; break;
        case O_FRAMES: o.frames = (int)parse_long("--frames", optarg, 1, 1 << 24); break;
        case O_TEACHER:
            if (o.nteachers == 16) die_usage("at most 16 --teacher");
            o.teacher[o.nteachers++] = optarg;
            break;
        case O_LW: o.loss_weight = parse_double("--loss-weight", optarg, 0, 1e6); break;
        case O_DW: o.distill_weight = parse_double("--distill-weight", optarg, 0, 1e6); break;
        case O_NOQUIRK: o.quirk = 0; break;
        case O_MAXSTEPS: o.max_steps = parse_long("--max-steps", optarg, 0, 1L << 40); break;
        case O_LOG: o.log = optarg; break;
        case O_CKPT: o.ckpt = optarg; break;
        case O_RESUME: o.resume = optarg; break;
        case O_VAL: o.val = optarg; break;
        case O_NEW: o.new_model = 1; break;
        case O_VOCAB: o.vocab = optarg; break;
        case O_SAVEINIT: o.save_init = optarg; break;
        case O_INITSEED: o.init_seed = parse_long("--init-seed", optarg, 0, 0x7fffffffL); break;
        case O_ACH: z->nblocks = parse_channels(optarg, z->channels), listed = 1, sized = 1; break;
        case O_ABL: blocks = (int)parse_long("--audio-blocks", optarg, 1, CLAP_MAX_BLOCKS), sized = 1; break;
        case O_AW: width = (int)parse_long("--audio-width", optarg, 1, 65536), sized = 1; break;
        case O_NMELS: z->n_mels = (int)parse_long("--n-mels", optarg, 1, 4096), sized = 1; break;
        case O_EMBED: z->embed = (int)parse_long("--embed", optarg, 1, 65536), sized = 1; break;
        case O_TL: z->layers = (int)parse_long("--text-layers", optarg, 1, 1024), sized = 1; break;
        case O_TW: z->hidden = (int)parse_long("--text-width", optarg, 1, 65536), sized = 1; break;
        case O_TH: z->heads = (int)parse_long("--text-heads", optarg, 1, 65536), sized = 1; break;
        case O_TF: z->intermediate = (int)parse_long("--text-ffn", optarg, 1, 1 << 20), sized = 1; break;
        case O_TP: z->positions = (int)parse_long("--text-max-pos", optarg, 3, 1 << 16), sized = 1; break;
        case O_TML: z->max_len = (int)parse_long("--text-max-len", optarg, 3, 1 << 16), sized = 1; break;
        case O_MICRO: o.micro_bs = (int)parse_long("--micro-bs", optarg, 1, 1 << 16); break;
        case O_RECOMP: o.recompute = 1; break;
        case O_SAVEGRADS: o.save_grads = optarg; break;
        case O_AUDIOLIST: o.audio_list = optarg; break;
        case O_NOJITTER: o.jitter = 0; break;
        case O_NOCROP: o.crop = 0; break;
        case O_POT: o.patchout_t = (int)parse_long("--patchout-t", optarg, 0, 1 << 16); break;
        case O_POF: o.patchout_f = (int)parse_long("--patchout-f", optarg, 0, 1 << 16); break;
        case O_DROP: o.drop_rate = parse_double("--drop-rate", optarg, 0, 0.999); break;
        case O_ADROP: o.attn_drop_rate = parse_double("--attn-drop-rate", optarg, 0, 0.999); break;
        case O_DPATH: o.drop_path_rate = parse_double("--drop-path-rate", optarg, 0, 0.999); break;
        case O_TDROP: o.text_dropout = parse_double("--text-dropout", optarg, 0, 0.999); break;
        case O_TADROP: o.text_attn_dropout = parse_double("--text-attn-dropout", optarg, 0, 0.999); break;
        case 'j': o.threads = (int)parse_long("--threads", optarg, 1, 256); break;
        case 'v': tool_verbose++; break;
        case 'q': tool_quiet = 1; break;
        case 'h': fputs(usage, stdout); return EXIT_OK;
        default: die_bad_option(c, argv);
        }
    }
    if (optind < argc) die_usage("unexpected argument '%s'", argv[optind]);
    if (o.new_model) {
        if (o.init) die_usage("--new and --init: give one of them");
        if (o.resume) die_usage("--new and --resume: a checkpoint already holds its model");
        if (!o.vocab) die_usage("--new needs --vocab VOCAB.txt (bert-base-uncased's for WavCaps' sizes)");
        if (listed && (blocks || width)) die_usage("--audio-channels, or --audio-blocks and --audio-width, not both");
        if (blocks || width) {
            if (blocks) z->nblocks = blocks;
            int w = width ? width : z->channels[0];
            for (int k = 0; k < z->nblocks; k++) {
                if ((long)w << k > 65536) die_usage("--audio-width %d: block %d would have %ld channels", w, k + 1, (long)w << k);
                z->channels[k] = w << k;
            }
        }
        char err[300];
        if (clap_sizes_check(z, err, sizeof err)) die_usage("--new: %s", err);
    } else if (sized || o.vocab || o.save_init || o.init_seed >= 0) {
        die_usage("the model sizes, --vocab, --save-init and --init-seed go with --new");
    }
    int init_only = o.new_model && o.save_init && !o.mel && !o.captions && !o.out;
    if (!o.init && !o.resume && !o.new_model)
        die_usage("no model: give --init MODEL, --new (with sizes), or --resume CHECKPOINT");
    if (!init_only) {
        if (!o.mel && !o.audio_list) die_usage("no mel stream: give --mel FILE (or, PaSST-RoBERTa, --audio-list FILE)");
        if (o.mel && o.audio_list) die_usage("--mel and --audio-list: give one of them");
        if (!o.captions) die_usage("no captions: give --captions FILE");
        if (!o.out) die_usage("no output: give -o FILE");
    }
    if (o.distill_weight > 0 && !o.nteachers) die_usage("--distill-weight needs at least one --teacher");
    if (o.ramp1 < o.ramp0) die_usage("--rampdown-stop must not come before --rampdown-start");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    o.stop = &stop_flag;
    if (ranks > 1 && dist_rank() > 0) tool_quiet = 1; /* rank 0 reports; every rank names its errors */
    int rc = clap_train_run(&o);
    dist_finalize();
    return rc;
}
