// stllr_layer: one dense S-TLLR layer (binary input spikes), time-multiplexed,
// bit-exact with the integer model (fixedpoint/network.py, docs/fixedpoint_model.md).
//
// One neuron and one synapse at a time. A time step has two phases:
//
//   forward (step_start, x):   pre-traces q_j (N_IN cycles), then per neuron o:
//       I = round(sum_j x_j W[o,j] + b)              (N_IN cycles, S_CUR)
//       u = round(beta v + I)                         (S_N1 current, S_N2 membrane)
//       o = (u - theta > 0); v = soft/hard reset; psi; p = round(lambda_post p + psi)  (S_N3)
//   learn (learn_start, lsig), only in the window t >= T - k, per neuron o:
//       a = round(alpha_pre L), b = round(alpha_post L)                  (S_L1)
//       m = round(a psi), n = round(b p[t-1])                            (S_L2)
//       acc[o,j] = ovf(acc + round(m q_j + n x_j))                       (N_IN cycles, S_ACC)
//       acc_b[o] = ovf(acc_b + round(L psi))  (or exact: m q_b + n)      (S_ACCB)
//     and on write steps (batch: t = T-1; online: every window step), per synapse:
//       W = ovf(round(W - eta acc)) with xorshift32 stochastic rounding  (S_WR, S_WRB)
//
// Every state update is ONE rounding of an exact sum (DW bits wide: rtl-export sizes DW
// from the formats so that no intermediate can overflow; the integer model keeps them all
// below 2**53) followed by the destination's overflow policy.
// Rounding codes: 0 floor, 1 nearest_even, 2 nearest_away, 3 stochastic. Overflow
// codes: 0 saturate, 1 wrap, 2 raise (implemented as saturate: a vector set that was
// generated without an error never overflows a 'raise' tensor).
// Parameters are the values of the exported package (rtl-export params); SH_* are its
// alignment shifts (> 0 right shift with rounding, <= 0 exact left shift).
// Observation ports (*_valid records) carry every computed value for the testbenches.
`timescale 1ns / 1ps

module stllr_layer #(
    parameter integer N_IN = 8,
    parameter integer N_OUT = 4,
    parameter integer T_STEPS = 8,
    parameter integer WINDOW = 4,
    parameter integer ONLINE = 0,
    parameter integer LEARNS = 1,
    parameter integer HAS_BIAS = 1,
    parameter integer BIAS_EXACT = 0,
    parameter integer RESET_HARD = 0,
    parameter integer PSI_TRIANGLE = 1,
    // stored formats: bits (sign included), signed, rounding, overflow
    parameter integer WEIGHT_BITS = 8, WEIGHT_SIGNED = 1, WEIGHT_ROUND = 1, WEIGHT_OVF = 0,
    parameter integer BIAS_BITS = 16, BIAS_SIGNED = 1, BIAS_ROUND = 1, BIAS_OVF = 0,
    parameter integer CURRENT_BITS = 32, CURRENT_SIGNED = 1, CURRENT_ROUND = 1, CURRENT_OVF = 0,
    parameter integer MEMBRANE_BITS = 16, MEMBRANE_SIGNED = 1, MEMBRANE_ROUND = 1, MEMBRANE_OVF = 0,
    parameter integer PRE_TRACE_BITS = 16, PRE_TRACE_SIGNED = 0, PRE_TRACE_ROUND = 1, PRE_TRACE_OVF = 0,
    parameter integer POST_TRACE_BITS = 16, POST_TRACE_SIGNED = 0, POST_TRACE_ROUND = 1, POST_TRACE_OVF = 0,
    parameter integer PSI_BITS = 8, PSI_SIGNED = 0, PSI_ROUND = 1, PSI_OVF = 0,
    parameter integer SIGNAL_BITS = 16, SIGNAL_SIGNED = 1,
    parameter integer MODULATION_BITS = 16, MODULATION_SIGNED = 1, MODULATION_ROUND = 1, MODULATION_OVF = 0,
    parameter integer UPDATE_BITS = 32, UPDATE_SIGNED = 1, UPDATE_ROUND = 1, UPDATE_OVF = 0,
    parameter integer LEAK_FRAC = 12,
    parameter integer DW = 64,  // internal datapath width (rtl-export: bound of every exact intermediate)
    // constants: integer codes in their formats
    parameter signed [63:0] BETA = 64'sd3686,
    parameter integer LEAK_SHIFT = 0,
    parameter signed [63:0] THETA = 64'sd614,
    parameter signed [63:0] LAMBDA_PRE = 64'sd1843,
    parameter signed [63:0] LAMBDA_POST = 64'sd1024,
    parameter signed [63:0] ALPHA_PRE = 64'sd256,
    parameter signed [63:0] ALPHA_POST = -64'sd51,
    parameter signed [63:0] PSI_WIDTH = 64'sd1024,
    parameter signed [63:0] PSI_SLOPE = 64'sd1229,
    parameter integer PSI_LUT_ENTRIES = 64,
    parameter integer PSI_LUT_SHIFT = 3,
    parameter signed [63:0] ETA = 64'sd4096,
    // alignment shifts
    parameter integer SH_W_CUR = 4, SH_B_CUR = 0, SH_CUR = 0,
    parameter integer SH_BV = 0, SH_CM = 12, SH_MEM = 12,
    parameter integer SH_PSI_TRI = 15,
    parameter integer SH_P_DEC = 0, SH_P_IN = 16, SH_P = 11,
    parameter integer SH_Q_DEC = 0, SH_Q_IN = 19, SH_Q = 11,
    parameter integer SH_QB_DEC = 0, SH_QB_IN = 19, SH_QB = 11,
    parameter integer SH_A = 8, SH_M = 7, SH_N = 12,
    parameter integer SH_EC = 0, SH_EN = 8, SH_U = 2,
    parameter integer SH_DB = 1, SH_DBX = 2, SH_DBN = 8,
    parameter integer SH_WW = 34, SH_WA = 0, SH_BW = 30, SH_BA = 0,
    // $readmemh files (rtl-export params)
    parameter WEIGHT_FILE = "layer0_weight.hex",
    parameter BIAS_FILE = "layer0_bias.hex",
    parameter WEIGHT_LANES_FILE = "layer0_weight_lanes.hex",
    parameter BIAS_LANES_FILE = "layer0_bias_lanes.hex",
    parameter PSI_LUT_FILE = "layer0_psi_lut.hex"
) (
    input  wire                           clk,
    input  wire                           rst,          // synchronous, active high: t = 0, idle
    input  wire                           step_start,   // begin a time step (x valid)
    input  wire [N_IN-1:0]                x,            // input spikes of this step
    input  wire                           learn_start,  // begin the learn phase (lsig valid)
    input  wire [N_OUT*SIGNAL_BITS-1:0]   lsig,         // learning signal, neuron o at [o*SIGNAL_BITS +: SIGNAL_BITS]
    output wire                           busy,
    output wire                           ready_step,   // idle, waiting for step_start
    output wire                           ready_learn,  // waiting for learn_start
    output reg                            fwd_done,     // pulse: spikes valid
    output reg                            step_done,    // pulse: step finished (t advanced)
    output reg  [N_OUT-1:0]               spikes,
    output wire [((T_STEPS > 1) ? $clog2(T_STEPS) : 1)-1:0] t_step,       // current step (0-based) of the sample
    // observation records
    output reg                            pre_valid,
    output reg  [((N_IN > 1) ? $clog2(N_IN) : 1)-1:0] pre_idx,
    output reg  [PRE_TRACE_BITS-1:0]      pre_q,
    output reg                            qb_valid,
    output reg  [PRE_TRACE_BITS-1:0]      qb_q,
    output reg                            neu_valid,
    output reg  [((N_OUT > 1) ? $clog2(N_OUT) : 1)-1:0] neu_idx,
    output reg  [CURRENT_BITS-1:0]        neu_current,
    output reg  [MEMBRANE_BITS-1:0]       neu_u,
    output reg  [MEMBRANE_BITS-1:0]       neu_v,
    output reg                            neu_spike,
    output reg  [PSI_BITS-1:0]            neu_psi,
    output reg  [POST_TRACE_BITS-1:0]     neu_p,
    output reg                            mod_valid,
    output reg  [((N_OUT > 1) ? $clog2(N_OUT) : 1)-1:0] mod_idx,
    output reg  [MODULATION_BITS-1:0]     mod_m,
    output reg  [MODULATION_BITS-1:0]     mod_n,
    output reg                            syn_valid,
    output reg  [((N_OUT * N_IN > 1) ? $clog2(N_OUT * N_IN) : 1)-1:0] syn_idx,  // o * N_IN + j
    output reg  [UPDATE_BITS-1:0]         syn_acc,
    output reg                            accb_valid,
    output reg  [((N_OUT > 1) ? $clog2(N_OUT) : 1)-1:0] accb_idx,
    output reg  [UPDATE_BITS-1:0]         accb_acc,
    output reg                            wr_valid,
    output reg  [((N_OUT * N_IN > 1) ? $clog2(N_OUT * N_IN) : 1)-1:0] wr_idx,
    output reg  [WEIGHT_BITS-1:0]         wr_w,
    output reg  [31:0]                    wr_lane,
    output reg                            wrb_valid,
    output reg  [((N_OUT > 1) ? $clog2(N_OUT) : 1)-1:0] wrb_idx,
    output reg  [BIAS_BITS-1:0]           wrb_b,
    output reg  [31:0]                    wrb_lane
);
    // ------------------------------------------------------------------ sizes
    localparam integer NSYN = N_OUT * N_IN;
    localparam integer IW = (N_IN > 1) ? $clog2(N_IN) : 1;
    localparam integer OW = (N_OUT > 1) ? $clog2(N_OUT) : 1;
    localparam integer AW = (NSYN > 1) ? $clog2(NSYN) : 1;
    localparam integer TW = (T_STEPS > 1) ? $clog2(T_STEPS) : 1;
    localparam integer JL = N_IN - 1;
    localparam integer OL = N_OUT - 1;
    localparam integer TL = T_STEPS - 1;
    localparam integer TS = T_STEPS - WINDOW;
    localparam [IW-1:0] J_LAST = JL[IW-1:0];
    localparam [OW-1:0] O_LAST = OL[OW-1:0];
    localparam [TW-1:0] T_LAST = TL[TW-1:0];
    localparam [TW-1:0] T_WIN = TS[TW-1:0];
    localparam integer LUT_N = (PSI_LUT_ENTRIES > 1) ? PSI_LUT_ENTRIES : 2;
    localparam integer LW = $clog2(LUT_N);
    localparam integer LUT_LI = PSI_LUT_ENTRIES - 1;

    // ------------------------------------------------------------------ arithmetic
    localparam signed [DW-1:0] ZERO = {DW{1'b0}};
    localparam signed [DW-1:0] ONE = {{(DW-1){1'b0}}, 1'b1};
    localparam signed [DW-1:0] LUT_LAST = {{(DW-32){1'b0}}, LUT_LI[31:0]};
    // constant codes at the datapath width (their values fit: checked by rtl-export)
    localparam signed [DW-1:0] K_BETA = $signed(BETA[DW-1:0]);
    localparam signed [DW-1:0] K_THETA = $signed(THETA[DW-1:0]);
    localparam signed [DW-1:0] K_LAMBDA_PRE = $signed(LAMBDA_PRE[DW-1:0]);
    localparam signed [DW-1:0] K_LAMBDA_POST = $signed(LAMBDA_POST[DW-1:0]);
    localparam signed [DW-1:0] K_ALPHA_PRE = $signed(ALPHA_PRE[DW-1:0]);
    localparam signed [DW-1:0] K_ALPHA_POST = $signed(ALPHA_POST[DW-1:0]);
    localparam signed [DW-1:0] K_PSI_WIDTH = $signed(PSI_WIDTH[DW-1:0]);
    localparam signed [DW-1:0] K_PSI_SLOPE = $signed(PSI_SLOPE[DW-1:0]);
    localparam signed [DW-1:0] K_ETA = $signed(ETA[DW-1:0]);

    // sign- (sgn != 0) or zero-extend the low `bits` bits of raw
    function signed [DW-1:0] ext;
        input [DW-1:0] raw;
        input integer bits;
        input integer sgn;
        reg [DW-1:0] t;
        begin
            t = raw << (DW - bits);
            if (sgn != 0) ext = $signed(t) >>> (DW - bits);
            else ext = $signed(t >> (DW - bits));
        end
    endfunction

    // round(v / 2**s) in mode (s <= 0: exact left shift); r: random bits (stochastic)
    function signed [DW-1:0] rnd;
        input signed [DW-1:0] v;
        input integer s;
        input integer mode;
        input [DW-1:0] r;
        reg signed [DW-1:0] q, rem, half, mask;
        reg up;
        begin
            if (s <= 0) begin
                rnd = v <<< (-s);
            end else begin
                mask = (ONE <<< s) - ONE;
                q = v >>> s;
                rem = v & mask;
                half = ONE <<< (s - 1);
                if (mode == 1) up = (rem > half) || ((rem == half) && q[0]);
                else if (mode == 2) up = (rem > half) || ((rem == half) && !q[DW-1]);
                else up = 1'b0;
                if (mode == 3) rnd = (v + $signed(r & mask)) >>> s;
                else rnd = q + $signed({{(DW-1){1'b0}}, up});
            end
        end
    endfunction

    // overflow policy into (bits, sgn): 1 wrap, else saturate
    function signed [DW-1:0] ovf;
        input signed [DW-1:0] v;
        input integer bits;
        input integer sgn;
        input integer policy;
        reg signed [DW-1:0] lo, hi;
        begin
            if (sgn != 0) begin
                lo = -(ONE <<< (bits - 1));
                hi = (ONE <<< (bits - 1)) - ONE;
            end else begin
                lo = ZERO;
                hi = (ONE <<< bits) - ONE;
            end
            if (policy == 1) ovf = ext(v, bits, sgn);
            else if (v < lo) ovf = lo;
            else if (v > hi) ovf = hi;
            else ovf = v;
        end
    endfunction

    function [31:0] xorshift32;
        input [31:0] s;
        reg [31:0] t;
        begin
            t = s ^ (s << 13);
            t = t ^ (t >> 17);
            xorshift32 = t ^ (t << 5);
        end
    endfunction

    // ------------------------------------------------------------------ state
    reg [WEIGHT_BITS-1:0]     w_mem    [0:NSYN-1];
    reg [UPDATE_BITS-1:0]     acc_mem  [0:NSYN-1];
    reg [31:0]                lane_mem [0:NSYN-1];
    reg [BIAS_BITS-1:0]       b_mem    [0:N_OUT-1];
    reg [UPDATE_BITS-1:0]     accb_mem [0:N_OUT-1];
    reg [31:0]                laneb_mem[0:N_OUT-1];
    reg [MEMBRANE_BITS-1:0]   v_mem    [0:N_OUT-1];
    reg [POST_TRACE_BITS-1:0] p_mem    [0:N_OUT-1];   // p[t]
    reg [POST_TRACE_BITS-1:0] pold_mem [0:N_OUT-1];   // p[t-1], for the non-causal term
    reg [PSI_BITS-1:0]        psi_mem  [0:N_OUT-1];
    reg [PRE_TRACE_BITS-1:0]  q_mem    [0:N_IN-1];
    reg [PRE_TRACE_BITS-1:0]  qb_r;

    initial begin
        $readmemh(WEIGHT_FILE, w_mem);
        if (WEIGHT_ROUND == 3) $readmemh(WEIGHT_LANES_FILE, lane_mem);
    end
    generate
        if (HAS_BIAS != 0) begin : g_bias_init
            initial begin
                $readmemh(BIAS_FILE, b_mem);
                if (BIAS_ROUND == 3) $readmemh(BIAS_LANES_FILE, laneb_mem);
            end
        end
    endgenerate

    // ------------------------------------------------------------------ control
    localparam [3:0] S_IDLE = 4'd0, S_PRE = 4'd1, S_CUR = 4'd2, S_N1 = 4'd3, S_N2 = 4'd4,
                     S_N3 = 4'd5, S_FDONE = 4'd6, S_WAITL = 4'd7, S_L1 = 4'd8, S_L2 = 4'd9,
                     S_ACC = 4'd10, S_ACCB = 4'd11, S_WR = 4'd12, S_WRB = 4'd13, S_END = 4'd14;
    reg [3:0]          state;
    reg [TW-1:0]       t;
    reg [IW-1:0]       j;
    reg [OW-1:0]       o;
    reg [AW-1:0]       a;      // synapse address o * N_IN + j
    reg [N_IN-1:0]     x_r;
    reg [N_OUT*SIGNAL_BITS-1:0] lsig_r;
    reg signed [DW-1:0]  cur_sum;
    // per-neuron registers at their stored widths (narrow multiplier operands)
    reg [CURRENT_BITS-1:0]    cur_r;
    reg [MEMBRANE_BITS-1:0]   u_r;
    reg [MODULATION_BITS-1:0] apre_r, apost_r, m_r, n_r;
    wire signed [DW-1:0] cur_v   = ext({{(DW - CURRENT_BITS){1'b0}}, cur_r}, CURRENT_BITS, CURRENT_SIGNED);
    wire signed [DW-1:0] u_v     = ext({{(DW - MEMBRANE_BITS){1'b0}}, u_r}, MEMBRANE_BITS, MEMBRANE_SIGNED);
    wire signed [DW-1:0] apre_v  = ext({{(DW - MODULATION_BITS){1'b0}}, apre_r}, MODULATION_BITS, MODULATION_SIGNED);
    wire signed [DW-1:0] apost_v = ext({{(DW - MODULATION_BITS){1'b0}}, apost_r}, MODULATION_BITS, MODULATION_SIGNED);
    wire signed [DW-1:0] m_v     = ext({{(DW - MODULATION_BITS){1'b0}}, m_r}, MODULATION_BITS, MODULATION_SIGNED);
    wire signed [DW-1:0] n_v     = ext({{(DW - MODULATION_BITS){1'b0}}, n_r}, MODULATION_BITS, MODULATION_SIGNED);

    wire first      = (t == {TW{1'b0}});                           // states read as 0
    wire in_window  = (LEARNS != 0) && (t >= T_WIN);
    wire acc_first  = (t == T_WIN);                                // accumulators read as 0
    wire write_step = (ONLINE != 0) ? in_window : ((LEARNS != 0) && (t == T_LAST));

    assign busy        = (state != S_IDLE);
    assign ready_step  = (state == S_IDLE);
    assign ready_learn = (state == S_WAITL);
    assign t_step      = t;

    // ------------------------------------------------------------------ datapath (combinational)
    // pre-trace of input j: q = round(lambda_pre q + x_j)
    wire signed [DW-1:0] q_old  = first ? ZERO : ext({{(DW - PRE_TRACE_BITS){1'b0}}, q_mem[j]},
                                                     PRE_TRACE_BITS, PRE_TRACE_SIGNED);
    wire signed [DW-1:0] x_j    = {{(DW-1){1'b0}}, x_r[j]};
    wire signed [DW-1:0] q_new  = ovf(rnd(((K_LAMBDA_PRE * q_old) <<< SH_Q_DEC) + (x_j <<< SH_Q_IN), SH_Q,
                                        PRE_TRACE_ROUND, {DW{1'b0}}), PRE_TRACE_BITS, PRE_TRACE_SIGNED, PRE_TRACE_OVF);
    wire signed [DW-1:0] qb_old = first ? ZERO : ext({{(DW - PRE_TRACE_BITS){1'b0}}, qb_r},
                                                     PRE_TRACE_BITS, PRE_TRACE_SIGNED);
    wire signed [DW-1:0] qb_new = ovf(rnd(((K_LAMBDA_PRE * qb_old) <<< SH_QB_DEC) + (ONE <<< SH_QB_IN), SH_QB,
                                        PRE_TRACE_ROUND, {DW{1'b0}}), PRE_TRACE_BITS, PRE_TRACE_SIGNED, PRE_TRACE_OVF);

    // synaptic current: W[o, j] added where x_j = 1
    wire signed [DW-1:0] w_a    = ext({{(DW - WEIGHT_BITS){1'b0}}, w_mem[a]}, WEIGHT_BITS, WEIGHT_SIGNED);
    wire signed [DW-1:0] b_o    = (HAS_BIAS != 0) ? ext({{(DW - BIAS_BITS){1'b0}}, b_mem[o]}, BIAS_BITS, BIAS_SIGNED)
                                                : ZERO;
    wire signed [DW-1:0] cur_q  = ovf(rnd(cur_sum, SH_CUR, CURRENT_ROUND, {DW{1'b0}}), CURRENT_BITS, CURRENT_SIGNED,
                                    CURRENT_OVF);

    // membrane: u = round(beta v + I)
    wire signed [DW-1:0] v_old  = first ? ZERO : ext({{(DW - MEMBRANE_BITS){1'b0}}, v_mem[o]},
                                                     MEMBRANE_BITS, MEMBRANE_SIGNED);
    wire signed [DW-1:0] bv     = (LEAK_SHIFT > 0) ? ((v_old <<< LEAK_FRAC) - (v_old <<< (LEAK_FRAC - LEAK_SHIFT)))
                                                 : (K_BETA * v_old);
    wire signed [DW-1:0] u_q    = ovf(rnd((bv <<< SH_BV) + (cur_v <<< SH_CM), SH_MEM, MEMBRANE_ROUND, {DW{1'b0}}),
                                    MEMBRANE_BITS, MEMBRANE_SIGNED, MEMBRANE_OVF);

    // spike, reset, Psi, post-trace
    wire signed [DW-1:0] z      = u_v - K_THETA;
    wire               spk    = (z > ZERO);
    wire signed [DW-1:0] v_rst  = (RESET_HARD != 0) ? (spk ? ZERO : u_v) : (spk ? z : u_v);
    wire signed [DW-1:0] v_new  = ovf(v_rst, MEMBRANE_BITS, MEMBRANE_SIGNED, MEMBRANE_OVF);
    wire signed [DW-1:0] absz   = (z < ZERO) ? -z : z;
    wire signed [DW-1:0] tri_d  = (K_PSI_WIDTH > absz) ? (K_PSI_WIDTH - absz) : ZERO;
    wire signed [DW-1:0] psi_tri = ovf(rnd(K_PSI_SLOPE * tri_d, SH_PSI_TRI, PSI_ROUND, {DW{1'b0}}), PSI_BITS, PSI_SIGNED,
                                     PSI_OVF);
    wire signed [DW-1:0] lut_i  = ((absz >>> PSI_LUT_SHIFT) < LUT_LAST) ? (absz >>> PSI_LUT_SHIFT) : LUT_LAST;
    wire [LW-1:0]      lut_a  = lut_i[LW-1:0];
    wire signed [DW-1:0] psi_lut;
    generate
        if (PSI_TRIANGLE == 0) begin : g_lut  // rational Psi: the exported table
            reg [PSI_BITS-1:0] lut [0:LUT_N-1];
            initial $readmemh(PSI_LUT_FILE, lut, 0, PSI_LUT_ENTRIES - 1);
            assign psi_lut = ext({{(DW - PSI_BITS){1'b0}}, lut[lut_a]}, PSI_BITS, PSI_SIGNED);
        end else begin : g_no_lut
            assign psi_lut = ZERO;
        end
    endgenerate
    wire signed [DW-1:0] psi_v  = (PSI_TRIANGLE != 0) ? psi_tri : psi_lut;
    wire signed [DW-1:0] p_old  = first ? ZERO : ext({{(DW - POST_TRACE_BITS){1'b0}}, p_mem[o]},
                                                     POST_TRACE_BITS, POST_TRACE_SIGNED);
    wire signed [DW-1:0] p_new  = ovf(rnd(((K_LAMBDA_POST * p_old) <<< SH_P_DEC) + (psi_v <<< SH_P_IN), SH_P,
                                        POST_TRACE_ROUND, {DW{1'b0}}), POST_TRACE_BITS, POST_TRACE_SIGNED, POST_TRACE_OVF);

    // per-neuron factors
    wire signed [DW-1:0] l_o    = ext({{(DW - SIGNAL_BITS){1'b0}}, lsig_r[o * SIGNAL_BITS +: SIGNAL_BITS]},
                                    SIGNAL_BITS, SIGNAL_SIGNED);
    wire signed [DW-1:0] apre_q = ovf(rnd(K_ALPHA_PRE * l_o, SH_A, MODULATION_ROUND, {DW{1'b0}}), MODULATION_BITS,
                                    MODULATION_SIGNED, MODULATION_OVF);
    wire signed [DW-1:0] apost_q = ovf(rnd(K_ALPHA_POST * l_o, SH_A, MODULATION_ROUND, {DW{1'b0}}), MODULATION_BITS,
                                     MODULATION_SIGNED, MODULATION_OVF);
    wire signed [DW-1:0] psi_o  = ext({{(DW - PSI_BITS){1'b0}}, psi_mem[o]}, PSI_BITS, PSI_SIGNED);
    wire signed [DW-1:0] pold_o = ext({{(DW - POST_TRACE_BITS){1'b0}}, pold_mem[o]}, POST_TRACE_BITS,
                                    POST_TRACE_SIGNED);
    wire signed [DW-1:0] m_q    = ovf(rnd(apre_v * psi_o, SH_M, MODULATION_ROUND, {DW{1'b0}}), MODULATION_BITS,
                                    MODULATION_SIGNED, MODULATION_OVF);
    wire signed [DW-1:0] n_q    = (K_ALPHA_POST == ZERO) ? ZERO
                              : ovf(rnd(apost_v * pold_o, SH_N, MODULATION_ROUND, {DW{1'b0}}), MODULATION_BITS,
                                    MODULATION_SIGNED, MODULATION_OVF);

    // eligibility and accumulation of synapse a = (o, j)
    wire signed [DW-1:0] q_j    = ext({{(DW - PRE_TRACE_BITS){1'b0}}, q_mem[j]}, PRE_TRACE_BITS, PRE_TRACE_SIGNED);
    wire signed [DW-1:0] elig   = ((m_v * q_j) <<< SH_EC) + (x_r[j] ? (n_v <<< SH_EN) : ZERO);
    wire signed [DW-1:0] acc_a  = ext({{(DW - UPDATE_BITS){1'b0}}, acc_mem[a]}, UPDATE_BITS, UPDATE_SIGNED);
    wire signed [DW-1:0] acc_new = ovf((acc_first ? ZERO : acc_a) + rnd(elig, SH_U, UPDATE_ROUND, {DW{1'b0}}),
                                     UPDATE_BITS, UPDATE_SIGNED, UPDATE_OVF);
    wire signed [DW-1:0] qb_v   = ext({{(DW - PRE_TRACE_BITS){1'b0}}, qb_r}, PRE_TRACE_BITS, PRE_TRACE_SIGNED);
    wire signed [DW-1:0] db     = (BIAS_EXACT != 0) ? rnd((m_v * qb_v) + (n_v <<< SH_DBN), SH_DBX, UPDATE_ROUND, {DW{1'b0}})
                                                  : rnd(l_o * psi_o, SH_DB, UPDATE_ROUND, {DW{1'b0}});
    wire signed [DW-1:0] accb_o = ext({{(DW - UPDATE_BITS){1'b0}}, accb_mem[o]}, UPDATE_BITS, UPDATE_SIGNED);
    wire signed [DW-1:0] accb_new = ovf((acc_first ? ZERO : accb_o) + db, UPDATE_BITS, UPDATE_SIGNED, UPDATE_OVF);

    // weight write of synapse a: W = round(W - eta acc), stochastic offset from the lane
    wire [31:0]        lane_n = xorshift32(lane_mem[a]);
    wire [DW-1:0]        lane_w = {{(DW-32){1'b0}}, lane_n};
    wire [DW-1:0]        r_w    = (SH_WW <= 32) ? (lane_w >> (32 - SH_WW)) : (lane_w << (SH_WW - 32));
    wire signed [DW-1:0] w_wide = (w_a <<< SH_WW) - ((K_ETA * acc_a) <<< SH_WA);
    wire signed [DW-1:0] w_new  = ovf(rnd(w_wide, SH_WW, WEIGHT_ROUND, r_w), WEIGHT_BITS, WEIGHT_SIGNED, WEIGHT_OVF);
    wire [31:0]        laneb_n = xorshift32(laneb_mem[o]);
    wire [DW-1:0]        laneb_w = {{(DW-32){1'b0}}, laneb_n};
    wire [DW-1:0]        r_b    = (SH_BW <= 32) ? (laneb_w >> (32 - SH_BW)) : (laneb_w << (SH_BW - 32));
    wire signed [DW-1:0] b_wide = (b_o <<< SH_BW) - ((K_ETA * accb_o) <<< SH_BA);
    wire signed [DW-1:0] b_new  = ovf(rnd(b_wide, SH_BW, BIAS_ROUND, r_b), BIAS_BITS, BIAS_SIGNED, BIAS_OVF);

    // Only the stored width of each DW-bit result is kept; ovf() makes the bits above it
    // copies of the sign (or zero), so dropping them loses nothing.
    wire unused_high_bits = &{1'b0, q_new[DW-1:PRE_TRACE_BITS], qb_new[DW-1:PRE_TRACE_BITS],
                              v_new[DW-1:MEMBRANE_BITS], lut_i[DW-1:LW], p_new[DW-1:POST_TRACE_BITS],
                              acc_new[DW-1:UPDATE_BITS], accb_new[DW-1:UPDATE_BITS], w_new[DW-1:WEIGHT_BITS],
                              b_new[DW-1:BIAS_BITS], lut_a, cur_q[DW-1:CURRENT_BITS], u_q[DW-1:MEMBRANE_BITS],
                              apre_q[DW-1:MODULATION_BITS], apost_q[DW-1:MODULATION_BITS], m_q[DW-1:MODULATION_BITS],
                              n_q[DW-1:MODULATION_BITS], 1'b0};

    // ------------------------------------------------------------------ sequencer
    always @(posedge clk) begin
        pre_valid  <= 1'b0;
        qb_valid   <= 1'b0;
        neu_valid  <= 1'b0;
        mod_valid  <= 1'b0;
        syn_valid  <= 1'b0;
        accb_valid <= 1'b0;
        wr_valid   <= 1'b0;
        wrb_valid  <= 1'b0;
        fwd_done   <= 1'b0;
        step_done  <= 1'b0;
        if (rst) begin
            state <= S_IDLE;
            t <= {TW{1'b0}};
            j <= {IW{1'b0}};
            o <= {OW{1'b0}};
            a <= {AW{1'b0}};
        end else begin
            case (state)
                S_IDLE: if (step_start) begin
                    x_r <= x;
                    j <= {IW{1'b0}};
                    state <= S_PRE;
                end
                S_PRE: begin  // one input per cycle
                    q_mem[j] <= q_new[PRE_TRACE_BITS-1:0];
                    pre_valid <= 1'b1;
                    pre_idx <= j;
                    pre_q <= q_new[PRE_TRACE_BITS-1:0];
                    if (j == {IW{1'b0}} && HAS_BIAS != 0) begin
                        qb_r <= qb_new[PRE_TRACE_BITS-1:0];
                        qb_valid <= 1'b1;
                        qb_q <= qb_new[PRE_TRACE_BITS-1:0];
                    end
                    if (j == J_LAST) begin
                        j <= {IW{1'b0}};
                        o <= {OW{1'b0}};
                        a <= {AW{1'b0}};
                        cur_sum <= ZERO;
                        state <= S_CUR;
                    end else j <= j + 1'b1;
                end
                S_CUR: begin  // one synapse per cycle
                    cur_sum <= cur_sum + (x_r[j] ? (w_a <<< SH_W_CUR) : ZERO)
                               + ((j == {IW{1'b0}}) ? (b_o <<< SH_B_CUR) : ZERO);
                    a <= a + 1'b1;
                    if (j == J_LAST) begin
                        j <= {IW{1'b0}};
                        state <= S_N1;
                    end else j <= j + 1'b1;
                end
                S_N1: begin
                    cur_r <= cur_q[CURRENT_BITS-1:0];
                    state <= S_N2;
                end
                S_N2: begin
                    u_r <= u_q[MEMBRANE_BITS-1:0];
                    state <= S_N3;
                end
                S_N3: begin
                    v_mem[o] <= v_new[MEMBRANE_BITS-1:0];
                    p_mem[o] <= p_new[POST_TRACE_BITS-1:0];
                    pold_mem[o] <= p_old[POST_TRACE_BITS-1:0];
                    psi_mem[o] <= psi_v[PSI_BITS-1:0];
                    spikes[o] <= spk;
                    neu_valid <= 1'b1;
                    neu_idx <= o;
                    neu_current <= cur_r;
                    neu_u <= u_r;
                    neu_v <= v_new[MEMBRANE_BITS-1:0];
                    neu_spike <= spk;
                    neu_psi <= psi_v[PSI_BITS-1:0];
                    neu_p <= p_new[POST_TRACE_BITS-1:0];
                    cur_sum <= ZERO;
                    if (o == O_LAST) state <= S_FDONE;
                    else begin
                        o <= o + 1'b1;
                        state <= S_CUR;
                    end
                end
                S_FDONE: begin
                    fwd_done <= 1'b1;
                    state <= in_window ? S_WAITL : S_END;
                end
                S_WAITL: if (learn_start) begin
                    lsig_r <= lsig;
                    o <= {OW{1'b0}};
                    a <= {AW{1'b0}};
                    state <= S_L1;
                end
                S_L1: begin
                    apre_r <= apre_q[MODULATION_BITS-1:0];
                    apost_r <= apost_q[MODULATION_BITS-1:0];
                    state <= S_L2;
                end
                S_L2: begin
                    m_r <= m_q[MODULATION_BITS-1:0];
                    n_r <= n_q[MODULATION_BITS-1:0];
                    mod_valid <= 1'b1;
                    mod_idx <= o;
                    mod_m <= m_q[MODULATION_BITS-1:0];
                    mod_n <= n_q[MODULATION_BITS-1:0];
                    j <= {IW{1'b0}};
                    state <= S_ACC;
                end
                S_ACC: begin  // one synapse per cycle
                    acc_mem[a] <= acc_new[UPDATE_BITS-1:0];
                    syn_valid <= 1'b1;
                    syn_idx <= a;
                    syn_acc <= acc_new[UPDATE_BITS-1:0];
                    a <= a + 1'b1;
                    if (j == J_LAST) begin
                        j <= {IW{1'b0}};
                        state <= (HAS_BIAS != 0) ? S_ACCB : S_L1;
                        if (HAS_BIAS == 0) begin
                            if (o == O_LAST) begin
                                o <= {OW{1'b0}};
                                a <= {AW{1'b0}};
                                state <= write_step ? S_WR : S_END;
                            end else o <= o + 1'b1;
                        end
                    end else j <= j + 1'b1;
                end
                S_ACCB: begin
                    accb_mem[o] <= accb_new[UPDATE_BITS-1:0];
                    accb_valid <= 1'b1;
                    accb_idx <= o;
                    accb_acc <= accb_new[UPDATE_BITS-1:0];
                    if (o == O_LAST) begin
                        o <= {OW{1'b0}};
                        a <= {AW{1'b0}};
                        state <= write_step ? S_WR : S_END;
                    end else begin
                        o <= o + 1'b1;
                        state <= S_L1;
                    end
                end
                S_WR: begin  // one synapse per cycle
                    w_mem[a] <= w_new[WEIGHT_BITS-1:0];
                    acc_mem[a] <= {UPDATE_BITS{1'b0}};
                    if (WEIGHT_ROUND == 3) lane_mem[a] <= lane_n;
                    wr_valid <= 1'b1;
                    wr_idx <= a;
                    wr_w <= w_new[WEIGHT_BITS-1:0];
                    wr_lane <= (WEIGHT_ROUND == 3) ? lane_n : lane_mem[a];
                    a <= a + 1'b1;
                    if (j == J_LAST) begin
                        j <= {IW{1'b0}};
                        if (HAS_BIAS != 0) state <= S_WRB;
                        else if (o == O_LAST) state <= S_END;
                        else o <= o + 1'b1;
                    end else j <= j + 1'b1;
                end
                S_WRB: begin
                    b_mem[o] <= b_new[BIAS_BITS-1:0];
                    accb_mem[o] <= {UPDATE_BITS{1'b0}};
                    if (BIAS_ROUND == 3) laneb_mem[o] <= laneb_n;
                    wrb_valid <= 1'b1;
                    wrb_idx <= o;
                    wrb_b <= b_new[BIAS_BITS-1:0];
                    wrb_lane <= (BIAS_ROUND == 3) ? laneb_n : laneb_mem[o];
                    if (o == O_LAST) state <= S_END;
                    else begin
                        o <= o + 1'b1;
                        state <= S_WR;
                    end
                end
                S_END: begin
                    step_done <= 1'b1;
                    t <= (t == T_LAST) ? {TW{1'b0}} : t + 1'b1;
                    state <= S_IDLE;
                end
                default: state <= S_IDLE;
            endcase
        end
    end
endmodule
