`timescale 1ns / 1ps
// tb_stllr_layer: self-checking replay of a golden vector set (rtl-export golden) through
// stllr_layer_top, for `verilator --binary` (also runs in Icarus -g2012).
//
//   $ verilator --binary --top-module tb_stllr_layer +define+STLLR_PKG=stllr_layer0_pkg -GSAMPLES=<N> -GGOLD='"<set>/layer0/"' \
//       stllr_params.sv stllr_layer.v stllr_layer_top.sv tb_stllr_layer.sv
//   (run in the rtl-export params directory: the layer reads its $readmemh files there)
//
// Expected values come from the set's hex files with $readmemh; the number of words in
// every file is counted first (a short file would silently read 0 in Verilator, X in
// Icarus). One process at the falling edge drives the inputs and checks every record
// with !==; the number of records of each kind must match the vectors.
// Prints "TB PASS cycles=<n> checks=<n>" and ends with $finish (exit 0), or prints the
// first mismatches and ends with $fatal(1, "TB FAIL ..."): a non-zero exit status in both
// Icarus 11 (vvp) and Verilator 5.006 (--binary), so a script cannot mistake a failure
// for a pass ($finish(1) would still exit 0 in both).
`ifndef STLLR_PKG
`define STLLR_PKG stllr_layer0_pkg
`endif

module tb_stllr_layer;
    import `STLLR_PKG::*;

    parameter integer SAMPLES = 1;
    parameter GOLD = "golden/layer0/";  // directory of the layer's hex files, trailing '/'

    localparam integer NSYN = N_OUT * N_IN;
    localparam integer T0 = T_STEPS - WINDOW;
    localparam integer WR = (ONLINE != 0) ? WINDOW : 1;     // writes per sample
    localparam integer NST = SAMPLES * T_STEPS;
    localparam integer NSW = SAMPLES * WINDOW;
    localparam integer NSR = SAMPLES * WR;
    localparam integer HAS_NC = (ALPHA_POST != 0) ? 1 : 0;
    localparam integer STOCH_W = (WEIGHT_ROUND == 3) ? 1 : 0;
    localparam integer STOCH_B = (BIAS_ROUND == 3 && HAS_BIAS != 0) ? 1 : 0;
    localparam integer IW = (N_IN > 1) ? $clog2(N_IN) : 1;
    localparam integer OW = (N_OUT > 1) ? $clog2(N_OUT) : 1;
    localparam integer AW = (NSYN > 1) ? $clog2(NSYN) : 1;
    localparam integer TW = (T_STEPS > 1) ? $clog2(T_STEPS) : 1;
    localparam integer MAX_ERRORS = 10;

    // ---------------------------------------------------------------- expected values
    reg [0:0]                 e_input  [0:NST*N_IN-1];
    reg [PRE_TRACE_BITS-1:0]  e_pre    [0:NST*N_IN-1];
    reg [PRE_TRACE_BITS-1:0]  e_qb     [0:NST-1];
    reg [CURRENT_BITS-1:0]    e_cur    [0:NST*N_OUT-1];
    reg [MEMBRANE_BITS-1:0]   e_u      [0:NST*N_OUT-1];
    reg [MEMBRANE_BITS-1:0]   e_v      [0:NST*N_OUT-1];
    reg [0:0]                 e_spk    [0:NST*N_OUT-1];
    reg [PSI_BITS-1:0]        e_psi    [0:NST*N_OUT-1];
    reg [POST_TRACE_BITS-1:0] e_p      [0:NST*N_OUT-1];
    reg [SIGNAL_BITS-1:0]     e_ls     [0:NSW*N_OUT-1];
    reg [MODULATION_BITS-1:0] e_m      [0:NSW*N_OUT-1];
    reg [MODULATION_BITS-1:0] e_n      [0:NSW*N_OUT-1];
    reg [UPDATE_BITS-1:0]     e_acc    [0:NSW*NSYN-1];
    reg [UPDATE_BITS-1:0]     e_accb   [0:NSW*N_OUT-1];
    reg [WEIGHT_BITS-1:0]     e_w      [0:NSR*NSYN-1];
    reg [31:0]                e_wl     [0:NSR*NSYN-1];
    reg [BIAS_BITS-1:0]       e_b      [0:NSR*N_OUT-1];
    reg [31:0]                e_bl     [0:NSR*N_OUT-1];

    function automatic string path(input string name);
        return {GOLD, name};
    endfunction

    // count the words of a hex file: must be exactly `expected` lines
    task automatic count_words(input string name, input integer expected);
        integer fd, n, got;
        reg [8*64-1:0] line;
        fd = $fopen(path(name), "r");
        if (fd == 0) $fatal(1, "TB FAIL cannot open %s", path(name));
        n = 0;
        while (!$feof(fd)) begin
            got = $fgets(line, fd);
            if (got > 0) n = n + 1;
        end
        $fclose(fd);
        if (n != expected) $fatal(1, "TB FAIL %s: %0d words, expected %0d", path(name), n, expected);
    endtask

    // ---------------------------------------------------------------- DUT
    reg clk = 1'b0;
    reg rst = 1'b1;
    reg step_start = 1'b0;
    reg learn_start = 1'b0;
    reg [N_IN-1:0] x = {N_IN{1'b0}};
    reg [N_OUT*SIGNAL_BITS-1:0] lsig = {N_OUT*SIGNAL_BITS{1'b0}};
    wire busy, ready_step, ready_learn, fwd_done, step_done;
    wire [N_OUT-1:0] spikes;
    wire [TW-1:0] t_step;
    wire pre_valid, qb_valid, neu_valid, neu_spike, mod_valid, syn_valid, accb_valid, wr_valid, wrb_valid;
    wire [IW-1:0] pre_idx;
    wire [OW-1:0] neu_idx, mod_idx, accb_idx, wrb_idx;
    wire [AW-1:0] syn_idx, wr_idx;
    wire [PRE_TRACE_BITS-1:0] pre_q, qb_q;
    wire [CURRENT_BITS-1:0] neu_current;
    wire [MEMBRANE_BITS-1:0] neu_u, neu_v;
    wire [PSI_BITS-1:0] neu_psi;
    wire [POST_TRACE_BITS-1:0] neu_p;
    wire [MODULATION_BITS-1:0] mod_m, mod_n;
    wire [UPDATE_BITS-1:0] syn_acc, accb_acc;
    wire [WEIGHT_BITS-1:0] wr_w;
    wire [BIAS_BITS-1:0] wrb_b;
    wire [31:0] wr_lane, wrb_lane;

    stllr_layer_top dut (
        .clk(clk), .rst(rst), .step_start(step_start), .x(x), .learn_start(learn_start), .lsig(lsig),
        .busy(busy), .ready_step(ready_step), .ready_learn(ready_learn), .fwd_done(fwd_done),
        .step_done(step_done), .spikes(spikes), .t_step(t_step),
        .pre_valid(pre_valid), .pre_idx(pre_idx), .pre_q(pre_q), .qb_valid(qb_valid), .qb_q(qb_q),
        .neu_valid(neu_valid), .neu_idx(neu_idx), .neu_current(neu_current), .neu_u(neu_u), .neu_v(neu_v),
        .neu_spike(neu_spike), .neu_psi(neu_psi), .neu_p(neu_p),
        .mod_valid(mod_valid), .mod_idx(mod_idx), .mod_m(mod_m), .mod_n(mod_n),
        .syn_valid(syn_valid), .syn_idx(syn_idx), .syn_acc(syn_acc),
        .accb_valid(accb_valid), .accb_idx(accb_idx), .accb_acc(accb_acc),
        .wr_valid(wr_valid), .wr_idx(wr_idx), .wr_w(wr_w), .wr_lane(wr_lane),
        .wrb_valid(wrb_valid), .wrb_idx(wrb_idx), .wrb_b(wrb_b), .wrb_lane(wrb_lane));

    always #5 clk = ~clk;

    // ---------------------------------------------------------------- load
    initial begin
        count_words("input.hex", NST * N_IN);            $readmemh(path("input.hex"), e_input);
        count_words("pre_trace.hex", NST * N_IN);        $readmemh(path("pre_trace.hex"), e_pre);
        count_words("current.hex", NST * N_OUT);         $readmemh(path("current.hex"), e_cur);
        count_words("u.hex", NST * N_OUT);               $readmemh(path("u.hex"), e_u);
        count_words("membrane.hex", NST * N_OUT);        $readmemh(path("membrane.hex"), e_v);
        count_words("spikes.hex", NST * N_OUT);          $readmemh(path("spikes.hex"), e_spk);
        count_words("psi.hex", NST * N_OUT);             $readmemh(path("psi.hex"), e_psi);
        count_words("post_trace.hex", NST * N_OUT);      $readmemh(path("post_trace.hex"), e_p);
        count_words("learning_signal.hex", NSW * N_OUT); $readmemh(path("learning_signal.hex"), e_ls);
        count_words("causal.hex", NSW * N_OUT);          $readmemh(path("causal.hex"), e_m);
        count_words("acc_weight.hex", NSW * NSYN);       $readmemh(path("acc_weight.hex"), e_acc);
        count_words("weight_next.hex", NSR * NSYN);      $readmemh(path("weight_next.hex"), e_w);
        if (HAS_NC != 0) begin
            count_words("noncausal.hex", NSW * N_OUT);   $readmemh(path("noncausal.hex"), e_n);
        end
        if (STOCH_W != 0) begin
            count_words("weight_lanes_next.hex", NSR * NSYN); $readmemh(path("weight_lanes_next.hex"), e_wl);
        end
        if (HAS_BIAS != 0) begin
            count_words("bias_trace.hex", NST);          $readmemh(path("bias_trace.hex"), e_qb);
            count_words("acc_bias.hex", NSW * N_OUT);    $readmemh(path("acc_bias.hex"), e_accb);
            count_words("bias_next.hex", NSR * N_OUT);   $readmemh(path("bias_next.hex"), e_b);
        end
        if (STOCH_B != 0) begin
            count_words("bias_lanes_next.hex", NSR * N_OUT); $readmemh(path("bias_lanes_next.hex"), e_bl);
        end
        repeat (3) @(negedge clk);
        rst = 1'b0;
    end

    // ---------------------------------------------------------------- drive and check
    integer s = 0, t = 0, cycles = 0, errors = 0, checks = 0;
    integer n_pre = 0, n_qb = 0, n_neu = 0, n_mod = 0, n_syn = 0, n_accb = 0, n_wr = 0, n_wrb = 0, n_fwd = 0;
    reg issued = 1'b0, learned = 1'b0;
    integer w, wi, k, base;

    task automatic fail(input string what, input integer index, input [63:0] got, input [63:0] want);
        errors = errors + 1;
        if (errors <= MAX_ERRORS)
            $display("MISMATCH %s sample %0d step %0d index %0d: rtl %h, vectors %h", what, s, t, index, got, want);
    endtask

    always @(negedge clk) if (!rst && s < SAMPLES) begin
        cycles = cycles + 1;
        if (cycles > 200 * NST * (N_IN + 8) * (N_OUT + 2)) $fatal(1, "TB FAIL timeout at sample %0d step %0d", s, t);
        step_start <= 1'b0;
        learn_start <= 1'b0;
        w = t - T0;
        wi = (ONLINE != 0) ? w : 0;
        // ---- records registered at the last rising edge
        if (pre_valid) begin
            n_pre = n_pre + 1; checks = checks + 1;
            k = (s * T_STEPS + t) * N_IN + int'(pre_idx);
            if (pre_q !== e_pre[k]) fail("pre_trace", int'(pre_idx), 64'(pre_q), 64'(e_pre[k]));
        end
        if (qb_valid) begin
            n_qb = n_qb + 1; checks = checks + 1;
            k = s * T_STEPS + t;
            if (qb_q !== e_qb[k]) fail("bias_trace", 0, 64'(qb_q), 64'(e_qb[k]));
        end
        if (neu_valid) begin
            n_neu = n_neu + 1; checks = checks + 6;
            k = (s * T_STEPS + t) * N_OUT + int'(neu_idx);
            if (neu_current !== e_cur[k]) fail("current", int'(neu_idx), 64'(neu_current), 64'(e_cur[k]));
            if (neu_u !== e_u[k]) fail("u", int'(neu_idx), 64'(neu_u), 64'(e_u[k]));
            if (neu_v !== e_v[k]) fail("membrane", int'(neu_idx), 64'(neu_v), 64'(e_v[k]));
            if (neu_spike !== e_spk[k]) fail("spikes", int'(neu_idx), 64'(neu_spike), 64'(e_spk[k]));
            if (neu_psi !== e_psi[k]) fail("psi", int'(neu_idx), 64'(neu_psi), 64'(e_psi[k]));
            if (neu_p !== e_p[k]) fail("post_trace", int'(neu_idx), 64'(neu_p), 64'(e_p[k]));
        end
        if (mod_valid) begin
            n_mod = n_mod + 1; checks = checks + 2;
            k = (s * WINDOW + w) * N_OUT + int'(mod_idx);
            if (mod_m !== e_m[k]) fail("causal", int'(mod_idx), 64'(mod_m), 64'(e_m[k]));
            if (HAS_NC != 0) begin
                if (mod_n !== e_n[k]) fail("noncausal", int'(mod_idx), 64'(mod_n), 64'(e_n[k]));
            end else if (mod_n !== {MODULATION_BITS{1'b0}}) fail("noncausal (alpha_post = 0)", int'(mod_idx),
                                                                 64'(mod_n), 64'd0);
        end
        if (syn_valid) begin
            n_syn = n_syn + 1; checks = checks + 1;
            k = (s * WINDOW + w) * NSYN + int'(syn_idx);
            if (syn_acc !== e_acc[k]) fail("acc_weight", int'(syn_idx), 64'(syn_acc), 64'(e_acc[k]));
        end
        if (accb_valid) begin
            n_accb = n_accb + 1; checks = checks + 1;
            k = (s * WINDOW + w) * N_OUT + int'(accb_idx);
            if (accb_acc !== e_accb[k]) fail("acc_bias", int'(accb_idx), 64'(accb_acc), 64'(e_accb[k]));
        end
        if (wr_valid) begin
            n_wr = n_wr + 1; checks = checks + 1 + STOCH_W;
            k = (s * WR + wi) * NSYN + int'(wr_idx);
            if (wr_w !== e_w[k]) fail("weight_next", int'(wr_idx), 64'(wr_w), 64'(e_w[k]));
            if (STOCH_W != 0 && wr_lane !== e_wl[k]) fail("weight_lanes_next", int'(wr_idx), 64'(wr_lane),
                                                          64'(e_wl[k]));
        end
        if (wrb_valid) begin
            n_wrb = n_wrb + 1; checks = checks + 1 + STOCH_B;
            k = (s * WR + wi) * N_OUT + int'(wrb_idx);
            if (wrb_b !== e_b[k]) fail("bias_next", int'(wrb_idx), 64'(wrb_b), 64'(e_b[k]));
            if (STOCH_B != 0 && wrb_lane !== e_bl[k]) fail("bias_lanes_next", int'(wrb_idx), 64'(wrb_lane),
                                                           64'(e_bl[k]));
        end
        if (fwd_done) begin
            n_fwd = n_fwd + 1;
            for (integer o = 0; o < N_OUT; o = o + 1) begin
                checks = checks + 1;
                if (spikes[o] !== e_spk[(s * T_STEPS + t) * N_OUT + o]) fail("spike vector", o, 64'(spikes[o]),
                    64'(e_spk[(s * T_STEPS + t) * N_OUT + o]));
            end
        end
        // ---- control
        if (step_done) begin
            k = (t + 1) % T_STEPS;
            if (int'(t_step) != k) fail("t_step", 0, 64'(t_step), 64'(k));
            issued = 1'b0;
            learned = 1'b0;
            t = t + 1;
            if (t == T_STEPS) begin
                t = 0;
                s = s + 1;
            end
        end else if (!issued && ready_step) begin
            base = (s * T_STEPS + t) * N_IN;
            for (integer j = 0; j < N_IN; j = j + 1) x[j] <= e_input[base + j];
            step_start <= 1'b1;
            issued = 1'b1;
        end else if (issued && !learned && ready_learn) begin
            base = (s * WINDOW + w) * N_OUT;
            for (integer o = 0; o < N_OUT; o = o + 1) lsig[o * SIGNAL_BITS +: SIGNAL_BITS] <= e_ls[base + o];
            learn_start <= 1'b1;
            learned = 1'b1;
        end
        if (s == SAMPLES) begin
            if (n_pre != NST * N_IN) fail("pre_trace record count", 0, 64'(n_pre), 64'(NST * N_IN));
            if (n_qb != ((HAS_BIAS != 0) ? NST : 0)) fail("bias_trace record count", 0, 64'(n_qb), 64'(NST));
            if (n_neu != NST * N_OUT) fail("neuron record count", 0, 64'(n_neu), 64'(NST * N_OUT));
            if (n_mod != NSW * N_OUT) fail("modulation record count", 0, 64'(n_mod), 64'(NSW * N_OUT));
            if (n_syn != NSW * NSYN) fail("accumulator record count", 0, 64'(n_syn), 64'(NSW * NSYN));
            if (n_accb != ((HAS_BIAS != 0) ? NSW * N_OUT : 0)) fail("bias accumulator record count", 0,
                                                                    64'(n_accb), 64'(NSW * N_OUT));
            if (n_wr != NSR * NSYN) fail("weight write record count", 0, 64'(n_wr), 64'(NSR * NSYN));
            if (n_wrb != ((HAS_BIAS != 0) ? NSR * N_OUT : 0)) fail("bias write record count", 0, 64'(n_wrb),
                                                                   64'(NSR * N_OUT));
            if (n_fwd != NST) fail("forward-done count", 0, 64'(n_fwd), 64'(NST));
            if (errors != 0) $fatal(1, "TB FAIL errors=%0d cycles=%0d checks=%0d", errors, cycles, checks);
            $display("TB PASS cycles=%0d checks=%0d", cycles, checks);
            $finish;
        end
    end
endmodule
