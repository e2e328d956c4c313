// stllr_requant: one rounding of an exact value into a stored format, then the format's
// overflow policy -- the integer model's rule for every state update
// (docs/fixedpoint_model.md section 3: req_x(v, s) = ovf_x(round_x(v, s))).
//
//   SHIFT > 0 : round(v / 2**SHIFT) in MODE (0 floor, 1 nearest_even, 2 nearest_away,
//               3 stochastic: floor((v + r) / 2**SHIFT), r = the top SHIFT bits of the
//               xorshift32 word, or the word << (SHIFT - 32) when SHIFT > 32)
//   SHIFT <= 0: v << -SHIFT (exact)
//   OVF 0 saturate / 2 raise (a run that raised never reaches the RTL): clamp to the
//   format's range; 1 wrap: keep the low OB bits. `ovf` is 1 when the rounded value lay
//   outside the range (the event the model counts).
`timescale 1ns / 1ps

module stllr_requant #(
    parameter integer IW = 16,      // input width (signed)
    parameter integer SHIFT = 0,
    parameter integer MODE = 1,
    parameter integer OB = 8,       // stored bits (sign included when OSIGNED)
    parameter integer OSIGNED = 1,
    parameter integer OVF = 0
) (
    input  wire signed [IW-1:0] v,
    input  wire        [31:0]   word,
    output wire        [OB-1:0] q,
    output wire                 ovf
);
    localparam integer RW = (SHIFT > 0) ? IW + 1 : IW - SHIFT;   // rounded value width
    localparam integer XW = ((RW > OB + 1) ? RW : OB + 1) + 1;   // compare width
    localparam integer SP = (SHIFT > 0) ? SHIFT : 1;
    localparam signed [XW-1:0] ONE = 1;
    localparam signed [XW-1:0] MAXV = (OSIGNED != 0) ? (ONE <<< (OB - 1)) - ONE : (ONE <<< OB) - ONE;
    localparam signed [XW-1:0] MINV = (OSIGNED != 0) ? -(ONE <<< (OB - 1)) : 0;

    wire signed [RW-1:0] rounded;
    generate
        if (SHIFT > 0) begin : g_right
            wire signed [IW:0] ve = {v[IW-1], v};
            wire signed [IW:0] fl = ve >>> SHIFT;
            wire [SP:0] rem = {1'b0, v[SP-1:0]};
            wire [SP:0] half = {{SP{1'b0}}, 1'b1} << (SHIFT - 1);
            wire gt = rem > half;
            wire eq = rem == half;
            wire up = (MODE == 1) ? (gt | (eq & fl[0])) : (MODE == 2) ? (gt | (eq & ~v[IW-1])) : 1'b0;
            // stochastic offset: the top SHIFT bits of the word (or the word << (SHIFT - 32))
            wire [95:0] wide_word = {64'd0, word};
            wire [95:0] offset = (SHIFT <= 32) ? (wide_word >> (32 - SHIFT)) : (wide_word << (SHIFT - 32));
            wire signed [IW+1:0] vs = {ve[IW], ve} + $signed({2'b00, offset[IW-1:0]});
            wire signed [IW+1:0] sto = vs >>> SHIFT;
            assign rounded = (MODE == 3) ? sto[IW:0] : fl + $signed({{IW{1'b0}}, up});
            wire unused = ^{offset[95:IW], sto[IW+1], vs[0]};
        end else if (SHIFT < 0) begin : g_left
            assign rounded = $signed({v, {(-SHIFT){1'b0}}});
            wire unused = ^word;
        end else begin : g_none
            assign rounded = v;
            wire unused = ^word;
        end
    endgenerate

    wire signed [XW-1:0] rx = {{(XW - RW){rounded[RW-1]}}, rounded};
    wire hi = rx > MAXV;
    wire lo = rx < MINV;
    assign ovf = hi | lo;
    wire [OB-1:0] sat = hi ? MAXV[OB-1:0] : lo ? MINV[OB-1:0] : rx[OB-1:0];
    assign q = (OVF == 1) ? rx[OB-1:0] : sat;
    wire unused_ovf = ^{MAXV[XW-1:OB], MINV[XW-1:OB], rx[XW-1:OB]};
endmodule
