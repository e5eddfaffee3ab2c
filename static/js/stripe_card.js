// Card entry in Stripe's own fields (PAYMENT_PROCESSOR=stripe). The card number,
// expiry and CVC are typed into Stripe.js's Card Element and go from the browser
// to Stripe only; this page and our servers see a token id, the brand and the
// last 4 digits. Stripe.js (window.Stripe) is loaded by the page from Stripe.

export class StripeCard {
  constructor({ publishableKey, mountOn }) {
    if (typeof window.Stripe !== "function") {
      throw new Error("Stripe.js did not load");
    }
    this.stripe = window.Stripe(publishableKey);
    this.card = this.stripe.elements().create("card", { hidePostalCode: true });
    this.card.mount(mountOn);
  }

  // {tokenId} or {message}: Stripe's own words for a card it cannot take.
  async token(name) {
    const result = await this.stripe.createToken(this.card, { name });
    if (result && result.token) return { tokenId: result.token.id };
    const error = (result && result.error) || {};
    return { message: error.message || "This card could not be read. Check its details." };
  }

  // Show the bank's 3-D Secure challenge for a payment the server confirmed. What
  // happened is read from Stripe by the server afterwards, never taken from here.
  async challenge(clientSecret) {
    try {
      await this.stripe.confirmCardPayment(clientSecret);
    } catch (err) {
      // The server learns the outcome from Stripe either way.
    }
  }
}
